// Launchers of reduce_kernels.cu: reductions over any set of axes (sum, mean, max, min, logsumexp,
// argmax) and the row-wise softmax family (softmax, log_softmax, sparse softmax cross-entropy).
#pragma once

#include "core/tensor/cuda/kernel_types.h"

namespace gradflow::cuda {

enum class ReduceOp : uint8_t { kSum, kMean, kMax, kMin, kLogSumExp, kArgMax };

// The input of a reduction seen as [outer, r]: element (o, j) is at offset(kept, o) + offset(reduced, j).
struct ReduceShape {
  StridedIndex<1> kept;     // the kept dimensions (row-major order of the output)
  StridedIndex<1> reduced;  // the reduced dimensions
  int64_t outer = 0;        // number of outputs
  int64_t r = 0;            // elements reduced into each output (0 allowed)
};

// How a reduction is split into blocks; from plan_reduce, with the workspace the caller allocates.
struct ReducePlan {
  bool by_rows = true;  // a block per (output, chunk); else a thread per (output, chunk)
  int64_t chunks = 1;   // pieces each output's r elements are split into (> 1: a second pass combines)
  size_t workspace_bytes = 0;
};
ReducePlan plan_reduce(const ReduceShape& shape);

// out (contiguous [outer]; i64 for argmax, else x's type) = the reduction of each row. Sums accumulate
// in double (floats) or int64 (integers); NaN wins max, min and argmax; argmax takes the first maximum.
// workspace must hold plan.workspace_bytes.
cudaError_t launch_reduce(cudaStream_t stream, ReduceOp op, ScalarType type, void* out, const void* x,
                          const ReduceShape& shape, const ReducePlan& plan, void* workspace);

enum class RowOp : uint8_t { kSoftmax, kLogSoftmax, kSparseXent };

// Row-wise ops over `outer` rows of n elements. rows holds the (out, x) offsets of each row's first
// element; x_stride and out_stride step along a row. Softmax and log_softmax write n outputs per row;
// sparse cross-entropy writes one, out[row] = logsumexp(x row) - x[row, labels[row]], with labels in
// [0, n) (validated by the caller) and out_stride ignored. Floating types only.
cudaError_t launch_row_op(cudaStream_t stream, RowOp op, ScalarType type, void* out, const void* x,
                          const int64_t* labels, const StridedIndex<2>& rows, int64_t outer, int64_t n,
                          int64_t out_stride, int64_t x_stride);

}  // namespace gradflow::cuda
