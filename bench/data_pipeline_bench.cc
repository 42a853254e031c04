// Does the input pipeline starve training? Step time of the seed model (batch 32) when its batches come
//   - from memory (compute only),
//   - from a Dataset that decodes each image in map() and batches, without prefetch,
//   - from the same Dataset with prefetch(kAutotune), which overlaps input work with the step.
// The goal: with prefetch, the step time equals the compute-only time.
// Run: build/bin/data_pipeline_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include "core/gradflow.h"

namespace gradflow {
namespace {

constexpr int64_t kExamples = 4096;
constexpr int64_t kBatch = 32;

struct Setup {
  Tensor images = (random_uniform({kExamples, 28, 28}, 0, 255, kF32, kCPU, 1)).to(kU8);
  Tensor labels = (random_uniform({kExamples}, 0, 10, kF32, kCPU, 2)).to(kI64);
  Sequential model{{Flatten(Shape{28, 28}), Dense(128, {.activation = "relu"}), Dropout(0.2),
                    Dense(10, {.activation = "softmax"})}};
  Setup() { model.compile("adam", "sparse_categorical_crossentropy", {"accuracy"}); }
};

// What a real pipeline does per example: decode bytes to floats, scale, and a random flip augmentation.
Element decode(const Element& e) {
  Tensor image = e[0].to(kF32) / 255.0;
  Tensor flipped = image.slice(1, 27, -29, -1);
  return {where(less(random_uniform({}, 0, 1), scalar(0.5)), image, flipped), e[1]};
}

Dataset pipeline(const Setup& s, bool prefetch) {
  Dataset ds = Dataset::from_tensor_slices({s.images, s.labels}).map(decode).batch(kBatch).repeat();
  return prefetch ? ds.prefetch(kAutotune) : ds;
}

void BM_StepComputeOnly(benchmark::State& state) {
  Setup s;
  Tensor x = s.images.slice(0, 0, kBatch).to(kF32) / 255.0;
  Tensor y = s.labels.slice(0, 0, kBatch);
  for (auto _ : state) train_step(s.model.impl(), x, y);
}

void run_pipeline(benchmark::State& state, bool prefetch) {
  Setup s;
  Iterator it = pipeline(s, prefetch).make_iterator();
  for (auto _ : state) {
    Element batch = *it.next();
    train_step(s.model.impl(), batch[0], batch[1]);
  }
}
void BM_StepPipelineNoPrefetch(benchmark::State& state) { run_pipeline(state, false); }
void BM_StepPipelinePrefetch(benchmark::State& state) { run_pipeline(state, true); }

// The input side alone, for reference: how long one batch takes to produce.
void BM_PipelineOnly(benchmark::State& state) {
  Setup s;
  Iterator it = pipeline(s, false).make_iterator();
  for (auto _ : state) benchmark::DoNotOptimize(it.next());
}

BENCHMARK(BM_StepComputeOnly)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_PipelineOnly)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_StepPipelineNoPrefetch)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_StepPipelinePrefetch)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace gradflow

BENCHMARK_MAIN();
