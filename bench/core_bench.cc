// Core performance targets, each measured side by side with the baseline it is judged against:
//   matmul 1024^3 f32, one thread:  gradflow matmul vs. a direct dnnl_sgemm call (the library it calls)
//   add of 16M floats:              gradflow add vs. memcpy of the same 64 MiB (machine bandwidth)
//   eager dispatch of a tiny op:    add of two 1-element tensors, end to end
//   the seed model's dropout:       dropout(0.2) of [32,128] and its parts (a uniform draw, a where on a
//                                   random mask), beside a mul of the same shape (one pass of the data)
//   a gradient into its bucket:     copy_into of the seed's [784,128] kernel gradient into a bucket's slot,
//                                   beside a memcpy of the same bytes
//   a shuffled batch of the seed's: gather of 32 random rows of a [60000,784] f32 array, beside a memcpy
//                                   per row of the same rows
// Run: build/bin/core_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <dnnl.h>
#include <omp.h>

#include <cstring>
#include <vector>

#include "core/gradflow.h"

namespace gradflow {
namespace {

constexpr int64_t kMatmulN = 1024;
constexpr int64_t kAddN = 16 << 20;

// Single-threaded BLAS and OpenMP for the duration of one benchmark.
class OneThread {
 public:
  OneThread() : blas_(openblas_get_num_threads()), omp_(omp_get_max_threads()) {
    openblas_set_num_threads(1);
    omp_set_num_threads(1);
  }
  ~OneThread() {
    openblas_set_num_threads(blas_);
    omp_set_num_threads(omp_);
  }

 private:
  int blas_, omp_;
};

void set_matmul_counters(benchmark::State& state) {
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * kMatmulN * kMatmulN * kMatmulN * state.iterations(),
                                                 benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void BM_MatmulGradflow(benchmark::State& state) {
  OneThread one;
  Tensor a = random_normal({kMatmulN, kMatmulN}, 0, 1, kF32, kCPU, 1);
  Tensor b = random_normal({kMatmulN, kMatmulN}, 0, 1, kF32, kCPU, 2);
  for (auto _ : state) benchmark::DoNotOptimize(matmul(a, b));
  set_matmul_counters(state);
}

void BM_MatmulOnednn(benchmark::State& state) {
  OneThread one;
  Tensor a = random_normal({kMatmulN, kMatmulN}, 0, 1, kF32, kCPU, 1);
  Tensor b = random_normal({kMatmulN, kMatmulN}, 0, 1, kF32, kCPU, 2);
  std::vector<float> c(kMatmulN * kMatmulN);
  for (auto _ : state) {
    dnnl_sgemm('N', 'N', kMatmulN, kMatmulN, kMatmulN, 1.0f, a.data<float>(), kMatmulN, b.data<float>(), kMatmulN,
               0.0f, c.data(), kMatmulN);
    benchmark::DoNotOptimize(c.data());
  }
  set_matmul_counters(state);
}

// Bytes moved: add reads two arrays and writes one; memcpy reads one and writes one.
void BM_AddGradflow(benchmark::State& state) {
  Tensor a = full({kAddN}, 1.0f);
  Tensor b = full({kAddN}, 2.0f);
  for (auto _ : state) benchmark::DoNotOptimize(add(a, b));
  state.SetBytesProcessed(state.iterations() * 3 * kAddN * sizeof(float));
}

void BM_Memcpy(benchmark::State& state) {
  std::vector<float> src(kAddN, 1.0f), dst(kAddN);
  for (auto _ : state) {
    std::memcpy(dst.data(), src.data(), kAddN * sizeof(float));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * 2 * kAddN * sizeof(float));
}

void BM_TinyAddDispatch(benchmark::State& state) {
  Tensor a = scalar(1.0f);
  Tensor b = scalar(2.0f);
  for (auto _ : state) benchmark::DoNotOptimize(add(a, b));
}

// The seed model's Dropout(0.2) layer on one batch of its hidden layer, one thread.
void BM_Dropout32x128(benchmark::State& state) {
  OneThread one;
  Tensor x = random_uniform({32, 128}, -1, 1);
  for (auto _ : state) benchmark::DoNotOptimize(dropout(x, 0.2));
}

void BM_RandomUniform32x128(benchmark::State& state) {
  OneThread one;
  for (auto _ : state) benchmark::DoNotOptimize(random_uniform({32, 128}, 0, 1));
}

void BM_WhereMask32x128(benchmark::State& state) {
  OneThread one;
  Tensor x = random_uniform({32, 128}, -1, 1);
  Tensor mask = greater(random_uniform({32, 128}, 0, 1), scalar(0.2));
  Tensor zero = scalar(0.0f);
  for (auto _ : state) benchmark::DoNotOptimize(where(mask, x, zero));
}

void BM_Mul32x128(benchmark::State& state) {
  OneThread one;
  Tensor x = random_uniform({32, 128}, -1, 1);
  Tensor y = random_uniform({32, 128}, -1, 1);
  for (auto _ : state) benchmark::DoNotOptimize(mul(x, y));
}

// The seed model's first kernel gradient copied into its slot of a data-parallel gradient bucket
// (strategies/gradient_buckets.cc), beside a memcpy of the same 0.4 MB.
void BM_BucketCopy784x128(benchmark::State& state) {
  OneThread one;
  Tensor grad = random_uniform({784, 128}, -1, 1);
  Tensor bucket = zeros({784 * 128 + 1290});
  Tensor slot = bucket.slice(0, 1290, 1290 + 784 * 128).reshape({784, 128});
  for (auto _ : state) copy_into(slot, grad);
}

// The same gradient rounded to bfloat16 and back (DataParallelOptions::compression).
void BM_ToBFloat16_784x128(benchmark::State& state) {
  OneThread one;
  Tensor grad = random_uniform({784, 128}, -1, 1);
  for (auto _ : state) benchmark::DoNotOptimize(grad.to(kBF16));
}

void BM_FromBFloat16_784x128(benchmark::State& state) {
  OneThread one;
  Tensor half = random_uniform({784, 128}, -1, 1).to(kBF16);
  for (auto _ : state) benchmark::DoNotOptimize(half.to(kF32));
}

void BM_Memcpy784x128(benchmark::State& state) {
  std::vector<float> src(784 * 128, 1.0f), dst(784 * 128 + 1290);
  for (auto _ : state) {
    std::memcpy(dst.data() + 1290, src.data(), src.size() * sizeof(float));
    benchmark::ClobberMemory();
  }
}

// A shuffled batch of the seed's input: 32 rows picked at random from a [60000, 784] f32 array (188 MB,
// far larger than the caches, as Fashion-MNIST's training images are), as fit gathers them; beside the
// plain loop of one memcpy per row over the same rows.
struct RandomRows {
  Tensor images = full({60000, 784}, 0.5);  // written: untouched pages would all read one zero page
  std::vector<std::vector<int64_t>> batches;
  RandomRows() {
    std::vector<int64_t> order = random_uniform({60000}, 0, 60000, kF64).to(kI64).to_vector<int64_t>();
    for (size_t at = 0; at + 32 <= order.size(); at += 32) batches.emplace_back(order.begin() + at, order.begin() + at + 32);
  }
};

void BM_GatherRows32x784(benchmark::State& state) {
  OneThread one;
  static RandomRows data;
  size_t b = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(gather(data.images, from_vector<int64_t>(data.batches[b])));
    b = (b + 1) % data.batches.size();
  }
}

void BM_MemcpyRows32x784(benchmark::State& state) {
  static RandomRows data;
  std::vector<float> out(32 * 784);
  const char* src = static_cast<const char*>(data.images.raw_data());
  size_t b = 0;
  for (auto _ : state) {
    for (size_t j = 0; j < 32; ++j) {
      std::memcpy(out.data() + j * 784, src + data.batches[b][j] * 784 * sizeof(float), 784 * sizeof(float));
    }
    benchmark::ClobberMemory();
    b = (b + 1) % data.batches.size();
  }
}

// The same kind of batch through the tf.data-style pipeline a custom loop uses:
// from_tensor_slices({images, labels}).shuffle(60000).batch(32), one batch per iteration.
void BM_SlicesShuffleBatch32x784(benchmark::State& state) {
  OneThread one;
  static RandomRows data;
  static Tensor labels = zeros({60000}, kI64);
  Dataset pipeline = Dataset::from_tensor_slices({data.images, labels}).shuffle(60000, 1).batch(32).repeat();
  Iterator it = pipeline.make_iterator();
  for (auto _ : state) benchmark::DoNotOptimize(it.next());
}

// One worker's batch of the same pipeline sharded by element between two workers (AutoShardPolicy::DATA,
// as distribute_dataset shards it): each worker passes over the other's batches.
void BM_SlicesShuffleBatch32x784Shard2(benchmark::State& state) {
  OneThread one;
  static RandomRows data;
  static Tensor labels = zeros({60000}, kI64);
  Dataset pipeline = Dataset::from_tensor_slices({data.images, labels}).shuffle(60000, 1).batch(32).shard(2, 0).repeat();
  Iterator it = pipeline.make_iterator();
  for (auto _ : state) benchmark::DoNotOptimize(it.next());
}

BENCHMARK(BM_MatmulGradflow)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MatmulOnednn)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AddGradflow)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Memcpy)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_TinyAddDispatch)->Unit(benchmark::kNanosecond);
BENCHMARK(BM_Dropout32x128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_RandomUniform32x128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_WhereMask32x128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Mul32x128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_BucketCopy784x128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Memcpy784x128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ToBFloat16_784x128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FromBFloat16_784x128)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GatherRows32x784)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MemcpyRows32x784)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SlicesShuffleBatch32x784)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SlicesShuffleBatch32x784Shard2)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace gradflow

BENCHMARK_MAIN();
