// Host-side helpers for the C++ wrappers that launch CUDA kernels (core/tensor/cuda/*.cc and
// core/ops/cuda/*_cuda.cc): the kernels' ScalarType of a DType, the current-device scope a launch needs,
// and the StridedIndex of operands sharing an index space.
//
//   KernelScope scope(out.device());
//   auto ix = strided_index<2>("cast", out.shape(), {out.strides(), src.strides()});
//   check(launch_convert(scope.stream(), ..., ix, out.numel()), "cast");
#pragma once

#include <array>
#include <string_view>

#include "core/tensor/cuda/cuda_check.h"
#include "core/tensor/cuda/cuda_device.h"
#include "core/tensor/cuda/kernel_types.h"
#include "core/tensor/tensor.h"

namespace gradflow::cuda {

inline ScalarType scalar_type(DType dtype) {
  static_assert(static_cast<int>(ScalarType::kF32) == static_cast<int>(DType::kF32) &&
                    static_cast<int>(ScalarType::kF64) == static_cast<int>(DType::kF64) &&
                    static_cast<int>(ScalarType::kF16) == static_cast<int>(DType::kF16) &&
                    static_cast<int>(ScalarType::kBF16) == static_cast<int>(DType::kBF16) &&
                    static_cast<int>(ScalarType::kI32) == static_cast<int>(DType::kI32) &&
                    static_cast<int>(ScalarType::kI64) == static_cast<int>(DType::kI64) &&
                    static_cast<int>(ScalarType::kU8) == static_cast<int>(DType::kU8) &&
                    static_cast<int>(ScalarType::kBool) == static_cast<int>(DType::kBool),
                "ScalarType must list the dtypes in DType's order");
  return static_cast<ScalarType>(dtype);
}

// Makes a CUDA device current for one kernel wrapper and hands out its stream.
class KernelScope {
 public:
  explicit KernelScope(Device device) : stream_(cuda::stream(device.index)), guard_(device.index) {}
  cudaStream_t stream() const { return stream_; }

 private:
  cudaStream_t stream_;  // first: stream() rejects a device that is not visible before the guard switches
  DeviceGuard guard_;
};

// The StridedIndex of N operands over `shape` (strides in elements, one list per operand). Size-1
// dimensions are dropped and neighbouring dimensions every operand is contiguous in are merged, so the
// common cases (contiguous, a broadcast scalar) index one dimension. DeviceError naming `op` when more
// than kMaxDims dimensions remain.
template <int N>
StridedIndex<N> strided_index(std::string_view op, const Shape& shape, const std::array<Strides, N>& strides) {
  StridedIndex<N> ix;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (ix.rank > 0) {
      bool mergeable = true;
      for (int k = 0; k < N; ++k) mergeable &= ix.strides[k][ix.rank - 1] == strides[k][d] * shape[d];
      if (mergeable) {
        ix.sizes[ix.rank - 1] *= shape[d];
        for (int k = 0; k < N; ++k) ix.strides[k][ix.rank - 1] = strides[k][d];
        continue;
      }
    }
    if (ix.rank == kMaxDims) {
      throw DeviceError(str_cat(op, ": operands of shape ", shape_str(shape), " need more than ", kMaxDims,
                                " strided dimensions, more than the CUDA kernels index; make them contiguous first"));
    }
    ix.sizes[ix.rank] = shape[d];
    for (int k = 0; k < N; ++k) ix.strides[k][ix.rank] = strides[k][d];
    ++ix.rank;
  }
  return ix;
}

}  // namespace gradflow::cuda
