// Does the input pipeline starve training? Step time of the seed model (batch 32, one compute thread)
// when its batches come
//   - from memory, already decoded (compute only),
//   - from a Dataset that decodes each image in map() and batches, without prefetch,
//   - from the same Dataset with prefetch(kAutotune), which overlaps input work with the step.
// The goal: with prefetch, the step time equals the compute-only time.
//
// This VM's speed drifts by 20% within a minute, so the modes are measured as pairs: each round runs
// every mode for --steps steps back to back, in a rotating order, and the ratio to compute-only is taken
// within the round. The medians over rounds of those ratios are what to quote.
// Run: build/bin/data_pipeline_bench [--rounds 15] [--steps 300]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/gradflow.h"

namespace gradflow {
namespace {

constexpr int64_t kExamples = 4096;
constexpr int64_t kBatch = 32;

// What a real pipeline does per example: decode bytes to floats, scale, and a random flip augmentation.
Element decode(const Element& e) {
  Tensor image = e[0].to(kF32) / 255.0;
  Tensor flipped = image.slice(1, 27, -29, -1);
  return {where(less(random_uniform({}, 0, 1), scalar(0.5)), image, flipped), e[1]};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Mode {
  const char* name;
  std::function<void()> step;
  std::vector<double> us_per_step;
};

int run(int rounds, int steps) {
  set_num_threads(1);
  Tensor images = random_uniform({kExamples, 28, 28}, 0, 255, kF32, kCPU, 1).to(kU8);
  Tensor labels = random_uniform({kExamples}, 0, 10, kF32, kCPU, 2).to(kI64);
  Sequential model{{Flatten(Shape{28, 28}), Dense(128, {.activation = "relu"}), Dropout(0.2),
                    Dense(10, {.activation = "softmax"})}};
  model.compile("adam", "sparse_categorical_crossentropy", {"accuracy"});

  // Compute only: the same batches the pipeline makes, decoded up front, cycled through.
  std::vector<Element> decoded;
  {
    Iterator it = Dataset::from_tensor_slices({images, labels}).map(decode).batch(kBatch).make_iterator();
    while (auto b = it.next()) decoded.push_back(std::move(*b));
  }
  size_t next_decoded = 0;
  Dataset ds = Dataset::from_tensor_slices({images, labels}).map(decode).batch(kBatch).repeat();
  Iterator plain = ds.make_iterator();
  Iterator prefetched = ds.prefetch(kAutotune).make_iterator();
  Iterator input_only = ds.make_iterator();

  std::vector<Mode> modes;
  modes.push_back({"compute only", [&] {
                     const Element& b = decoded[next_decoded++ % decoded.size()];
                     train_step(model.impl(), b[0], b[1]);
                   }});
  modes.push_back({"pipeline alone", [&] { (void)input_only.next(); }});
  modes.push_back({"pipeline + step, no prefetch", [&] {
                     Element b = *plain.next();
                     train_step(model.impl(), b[0], b[1]);
                   }});
  modes.push_back({"pipeline + step, prefetch", [&] {
                     Element b = *prefetched.next();
                     train_step(model.impl(), b[0], b[1]);
                   }});

  for (Mode& m : modes)
    for (int i = 0; i < steps / 3; ++i) m.step();  // warm-up: allocator cache, prefetch buffer full
  for (int r = 0; r < rounds; ++r) {
    for (size_t k = 0; k < modes.size(); ++k) {
      Mode& m = modes[(k + r) % modes.size()];
      auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < steps; ++i) m.step();
      std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - start;
      m.us_per_step.push_back(took.count() / steps);
    }
  }

  std::printf("%d rounds x %d steps per mode, one compute thread; microseconds per step\n", rounds, steps);
  std::printf("%-30s %10s %10s %10s %22s\n", "mode", "median", "min", "max", "median ratio to compute");
  const std::vector<double>& base = modes[0].us_per_step;
  for (const Mode& m : modes) {
    std::vector<double> ratios;
    for (int r = 0; r < rounds; ++r) ratios.push_back(m.us_per_step[r] / base[r]);
    std::printf("%-30s %10.0f %10.0f %10.0f %22.3f\n", m.name, median(m.us_per_step),
                *std::min_element(m.us_per_step.begin(), m.us_per_step.end()),
                *std::max_element(m.us_per_step.begin(), m.us_per_step.end()), median(ratios));
  }
  return 0;
}

}  // namespace
}  // namespace gradflow

int main(int argc, char** argv) {
  int rounds = 15, steps = 300;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--rounds") == 0) {
      rounds = std::atoi(argv[i + 1]);
    } else if (std::strcmp(argv[i], "--steps") == 0) {
      steps = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "data_pipeline_bench: unknown flag %s (use --rounds N --steps N)\n", argv[i]);
      return 2;
    }
  }
  if (rounds < 1 || steps < 3) {
    std::fprintf(stderr, "data_pipeline_bench: need --rounds >= 1 and --steps >= 3\n");
    return 2;
  }
  return gradflow::run(rounds, steps);
}
