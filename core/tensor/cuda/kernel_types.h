// Types shared by the CUDA launchers (*_kernels.cu) and their C++ wrappers (*_cuda.cc). Plain C++ with
// no gradflow or abseil headers, so nvcc compiles it: element types by enum, and the shape/strides of
// strided operands passed to kernels by value.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace gradflow::cuda {

// Element types as kernels see them, in gradflow::DType's order (cuda_util.h converts and checks).
enum class ScalarType : uint8_t { kF32, kF64, kF16, kBF16, kI32, kI64, kU8, kBool };

// Kernels index up to this many dimensions after merging the dimensions every operand is contiguous in.
inline constexpr int kMaxDims = 8;

// N operands over one row-major index space of `rank` dimensions: element i of the space is at
// sum over d of index_d(i) * strides[k][d] in operand k (strides in elements, 0 where broadcast).
template <int N>
struct StridedIndex {
  int rank = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};
};

}  // namespace gradflow::cuda
