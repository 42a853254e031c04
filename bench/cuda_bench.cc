// The CUDA backend beside the libraries it calls, on cuda:0 (Google Benchmark; every timed iteration
// ends with the stream synchronized, except the dispatch benchmark, which measures the host's cost of
// queueing one op):
//   matmul 4096^3 f32:        gradflow matmul vs. cublasSgemm called directly on the same stream
//   add of 16M floats:         gradflow add vs. cudaMemcpyAsync of the same 64 MiB, device to device
//   dispatch of a tiny add:    two 1-element tensors on the GPU
//   Adam step of the seed's model (its four variables, 101,770 parameters): one apply_gradients on the GPU
//     (bench/pytorch_adam_step.py times PyTorch's Adam on the same shapes, fused and foreach)
// Each reports SkipWithError without a CUDA device.
//   build/bin/cuda_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/gradflow.h"
#include "core/tensor/cuda/cuda_device.h"

namespace gradflow {
namespace {

constexpr int64_t kMatmulN = 4096;
constexpr int64_t kAddN = 16 << 20;
const Device kGpu = Device::cuda(0);

bool have_gpu(benchmark::State& state) {
  if (cuda_device_count() > 0) return true;
  state.SkipWithError("no CUDA device");
  return false;
}

void set_matmul_counters(benchmark::State& state) {
  state.counters["TFLOP/s"] = benchmark::Counter(2.0 * kMatmulN * kMatmulN * kMatmulN * state.iterations() / 1e12,
                                                 benchmark::Counter::kIsRate);
}

void BM_MatmulGradflowCuda(benchmark::State& state) {
  if (!have_gpu(state)) return;
  Tensor a = random_normal({kMatmulN, kMatmulN}, 0, 1, kF32, kGpu, 1);
  Tensor b = random_normal({kMatmulN, kMatmulN}, 0, 1, kF32, kGpu, 2);
  for (auto _ : state) {
    benchmark::DoNotOptimize(matmul(a, b));
    cuda::synchronize(0);
  }
  set_matmul_counters(state);
}

void BM_MatmulCublas(benchmark::State& state) {
  if (!have_gpu(state)) return;
  Tensor a = random_normal({kMatmulN, kMatmulN}, 0, 1, kF32, kGpu, 1);
  Tensor b = random_normal({kMatmulN, kMatmulN}, 0, 1, kF32, kGpu, 2);
  Tensor c = empty({kMatmulN, kMatmulN}, kF32, kGpu);
  cuda::DeviceGuard guard(0);
  cublasHandle_t handle;
  cublasCreate(&handle);
  cublasSetStream(handle, cuda::stream(0));
  const float alpha = 1, beta = 0;
  const int n = static_cast<int>(kMatmulN);
  for (auto _ : state) {
    // Row-major C = A B is column-major C^T = B^T A^T: the operands swap.
    cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, b.data<float>(), n, a.data<float>(), n, &beta,
                c.data<float>(), n);
    cuda::synchronize(0);
  }
  cublasDestroy(handle);
  set_matmul_counters(state);
}

// Bytes moved: add reads two arrays and writes one; a copy reads one and writes one.
void BM_AddGradflowCuda(benchmark::State& state) {
  if (!have_gpu(state)) return;
  Tensor a = full({kAddN}, 1.0, kF32, kGpu);
  Tensor b = full({kAddN}, 2.0, kF32, kGpu);
  for (auto _ : state) {
    benchmark::DoNotOptimize(add(a, b));
    cuda::synchronize(0);
  }
  state.SetBytesProcessed(state.iterations() * 3 * kAddN * static_cast<int64_t>(sizeof(float)));
}

void BM_MemcpyCuda(benchmark::State& state) {
  if (!have_gpu(state)) return;
  Tensor src = full({kAddN}, 1.0, kF32, kGpu);
  Tensor dst = empty({kAddN}, kF32, kGpu);
  cuda::DeviceGuard guard(0);
  for (auto _ : state) {
    cudaMemcpyAsync(dst.raw_data(), src.raw_data(), kAddN * sizeof(float), cudaMemcpyDeviceToDevice, cuda::stream(0));
    cuda::synchronize(0);
  }
  state.SetBytesProcessed(state.iterations() * 2 * kAddN * static_cast<int64_t>(sizeof(float)));
}

void BM_TinyAddDispatchCuda(benchmark::State& state) {
  if (!have_gpu(state)) return;
  Tensor a = scalar(1.0, kF32, kGpu);
  Tensor b = scalar(2.0, kF32, kGpu);
  int64_t queued = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(add(a, b));
    if (++queued % 4096 == 0) cuda::synchronize(0);  // keep the queue bounded
  }
  cuda::synchronize(0);
}

void BM_AdamStepSeedModelCuda(benchmark::State& state) {
  if (!have_gpu(state)) return;
  const std::vector<Shape> shapes = {{784, 128}, {128}, {128, 10}, {10}};
  std::vector<Variable> vars;
  std::vector<Tensor> grads;
  for (size_t k = 0; k < shapes.size(); ++k) {
    vars.emplace_back(random_normal(shapes[k], 0, 0.1, kF32, kGpu, 10 + k), str_cat("v", k));
    grads.push_back(random_normal(shapes[k], 0, 0.01, kF32, kGpu, 20 + k));
  }
  optimizers::Adam adam;
  adam.apply_gradients(grads, vars);  // slots built outside the timing
  cuda::synchronize(0);
  for (auto _ : state) {
    adam.apply_gradients(grads, vars);
    cuda::synchronize(0);
  }
}

BENCHMARK(BM_MatmulGradflowCuda)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MatmulCublas)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AddGradflowCuda)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_MemcpyCuda)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_TinyAddDispatchCuda)->Unit(benchmark::kNanosecond)->UseRealTime();
BENCHMARK(BM_AdamStepSeedModelCuda)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace gradflow

BENCHMARK_MAIN();
