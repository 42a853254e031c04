// Launchers of fill_kernels.cu: constant, arange and Philox random fills of contiguous device buffers.
// Each queues its kernel on `stream` and returns the launch status; n == 0 launches nothing.
#pragma once

#include "core/tensor/cuda/kernel_types.h"

namespace gradflow::cuda {

// out[i] = value converted to `type` as gradflow::convert does (f16/bf16 through float).
cudaError_t launch_fill(cudaStream_t stream, ScalarType type, void* out, int64_t n, double value);

// out[i] = start + i * step, converted to `type`.
cudaError_t launch_arange(cudaStream_t stream, ScalarType type, void* out, int64_t n, double start, double step);

enum class RandomKind : uint8_t { kUniform, kNormal, kTruncatedNormal };

// out[i] = a + (b - a) * uniform_at(seed, stream_id, i) (kUniform) or a + b * normal_at(...) (kNormal,
// kTruncatedNormal): the formulas of core/tensor/random.cc, so the CPU and GPU draw the same numbers.
// Floating types only.
cudaError_t launch_random(cudaStream_t stream, ScalarType type, void* out, int64_t n, RandomKind kind, double a,
                          double b, uint64_t seed, uint64_t stream_id);

}  // namespace gradflow::cuda
