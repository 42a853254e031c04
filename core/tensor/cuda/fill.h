// Filling CUDA tensors on the device: constants (full, zeros, ones), arange and Philox random numbers.
// creation.cc and random.cc call these for CUDA tensors instead of filling a host buffer and copying it;
// the random numbers are the CPU's for the same (seed, stream). Only in builds with GRADFLOW_WITH_CUDA.
#pragma once

#include <cstdint>

#include "core/tensor/tensor.h"

namespace gradflow::cuda {

// Every element of `out` (contiguous, on a CUDA device) becomes value converted to out's dtype.
void fill(const Tensor& out, double value);

// out[i] = start + i * step converted to out's dtype (out contiguous, 1-D, on a CUDA device).
void fill_arange(const Tensor& out, double start, double step);

enum class Distribution { kUniform, kNormal, kTruncatedNormal };

// out[i] = a + (b - a) * U_i for kUniform, a + b * Z_i for kNormal and kTruncatedNormal (Z within two
// standard deviations for the latter), with U_i, Z_i element i of Philox stream (seed, stream) as in
// core/tensor/random_math.h. out is contiguous, floating and on a CUDA device.
void fill_random(const Tensor& out, Distribution distribution, double a, double b, uint64_t seed, uint64_t stream);

}  // namespace gradflow::cuda
