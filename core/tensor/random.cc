#include "core/tensor/random.h"

#include "core/tensor/random_math.h"

#if GRADFLOW_WITH_CUDA
#include "core/tensor/cuda/fill.h"
#endif

namespace gradflow {

Generator& global_generator() {
  static Generator* generator = new Generator(0);
  return *generator;
}

void set_seed(uint64_t seed) { global_generator().set_state({seed, 0}); }

namespace {
thread_local Generator* scoped_generator = nullptr;
}  // namespace

GeneratorScope::GeneratorScope(Generator& generator) : previous_(scoped_generator) { scoped_generator = &generator; }
GeneratorScope::~GeneratorScope() { scoped_generator = previous_; }

RandomStream take_random_stream(std::optional<uint64_t> seed) {
  if (seed.has_value()) return {*seed, 0};
  Generator& g = scoped_generator != nullptr ? *scoped_generator : global_generator();
  return {g.seed(), g.take_stream()};
}

namespace {

enum class Distribution { kUniform, kNormal, kTruncatedNormal };

// out[i] = a + (b - a) * philox::uniform_float_at(seed, stream, i), computing each Philox block once for
// the four elements it serves (a loop over blocks, which vectorizes).
template <typename T>
void fill_uniform_floats(T* out, int64_t n, double a, double b, const RandomStream& rs) {
  auto value = [&](uint32_t bits) { return convert<T>(a + (b - a) * static_cast<double>(philox::uniform_float(bits))); };
  const int64_t full = n / 4;
#pragma omp parallel for if (n > (1 << 18))
  for (int64_t j = 0; j < full; ++j) {
    const philox::Uint4 w = philox::block(rs.seed, rs.stream, static_cast<uint64_t>(j));
    out[4 * j] = value(w.x);
    out[4 * j + 1] = value(w.y);
    out[4 * j + 2] = value(w.z);
    out[4 * j + 3] = value(w.w);
  }
  for (int64_t i = 4 * full; i < n; ++i) out[i] = value(philox::word(rs.seed, rs.stream, static_cast<uint64_t>(i)));
}

// Fills a host buffer element by element; the values depend only on (seed, stream, i), never on the
// thread that computes them.
Tensor sample(std::string_view op, Distribution dist, Shape shape, double a, double b, DType dtype, Device device,
              std::optional<uint64_t> seed) {
  if (!is_floating(dtype)) throw_unsupported_dtype(op, dtype);
  RandomStream rs = take_random_stream(seed);
#if GRADFLOW_WITH_CUDA
  if (device.is_cuda()) {  // the same numbers, drawn on the device
    Tensor out = empty(std::move(shape), dtype, device);
    cuda::fill_random(out,
                      dist == Distribution::kUniform  ? cuda::Distribution::kUniform
                      : dist == Distribution::kNormal ? cuda::Distribution::kNormal
                                                      : cuda::Distribution::kTruncatedNormal,
                      a, b, rs.seed, rs.stream);
    return out;
  }
#endif
  Tensor host = empty(std::move(shape), dtype, kCPU);
  int64_t n = host.numel();
  visit_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, bool> || std::is_integral_v<T>) {
      return;
    } else {
      T* out = static_cast<T*>(host.raw_data());
      // One loop per distribution: a switch inside the loop kept the compiler from vectorizing the
      // uniform case (a dropout mask's draw cost more than the layer's matmul).
      auto fill = [&](auto value_at) {
#pragma omp parallel for if (n > (1 << 18))
        for (int64_t i = 0; i < n; ++i) out[i] = convert<T>(value_at(i));
      };
      switch (dist) {
        case Distribution::kUniform:
          if constexpr (std::is_same_v<T, double>) {
            fill([&](int64_t i) { return a + (b - a) * philox::uniform_at(rs.seed, rs.stream, i); });
          } else {
            fill_uniform_floats(out, n, a, b, rs);
          }
          break;
        case Distribution::kNormal:
          fill([&](int64_t i) { return a + b * philox::normal_at(rs.seed, rs.stream, i); });
          break;
        default:
          fill([&](int64_t i) { return a + b * philox::truncated_normal_at(rs.seed, rs.stream, i); });
          break;
      }
    }
  });
  return device.is_cpu() ? host : host.to(device);
}

}  // namespace

Tensor random_uniform(Shape shape, double minval, double maxval, DType dtype, Device device,
                      std::optional<uint64_t> seed) {
  return sample("random_uniform", Distribution::kUniform, std::move(shape), minval, maxval, dtype, device, seed);
}

Tensor random_normal(Shape shape, double mean, double stddev, DType dtype, Device device, std::optional<uint64_t> seed) {
  return sample("random_normal", Distribution::kNormal, std::move(shape), mean, stddev, dtype, device, seed);
}

Tensor truncated_normal(Shape shape, double mean, double stddev, DType dtype, Device device,
                        std::optional<uint64_t> seed) {
  return sample("truncated_normal", Distribution::kTruncatedNormal, std::move(shape), mean, stddev, dtype, device,
                seed);
}

}  // namespace gradflow
