// How a GEMM library (BLAS, oneDNN, cuBLAS) should read the last two dimensions of a matmul operand:
// row-major with leading dimension ld, optionally transposed. Transposed views need no copy; other
// layouts are made contiguous first. Shared by the CPU and CUDA matmul kernels.
#pragma once

#include <algorithm>

#include "core/ops/internal.h"

namespace gradflow {

struct GemmOperand {
  Tensor t;
  bool transposed;
  int64_t ld;
};

inline GemmOperand as_gemm_operand(const Tensor& x, bool transpose) {
  int r = x.rank();
  int64_t rows = x.shape()[r - 2], cols = x.shape()[r - 1];
  int64_t s_row = x.strides()[r - 2], s_col = x.strides()[r - 1];
  if ((s_col == 1 || cols == 1) && s_row >= std::max<int64_t>(cols, 1)) return {x, transpose, s_row};
  if ((s_row == 1 || rows == 1) && s_col >= std::max<int64_t>(rows, 1)) return {x, !transpose, s_col};
  return {contiguous_kernel(x), transpose, std::max<int64_t>(cols, 1)};
}

}  // namespace gradflow
