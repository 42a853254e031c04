// Launchers of elementwise_kernels.cu: binary (broadcasting), unary and clip kernels over strided
// operands. f16/bf16 compute in float and round once; integer arithmetic wraps like the CPU kernels.
#pragma once

#include "core/tensor/cuda/kernel_types.h"

namespace gradflow::cuda {

enum class BinaryOp : uint8_t {
  kAdd, kSub, kMul, kDiv, kPow, kMaximum, kMinimum,                     // out has the input type
  kEqual, kNotEqual, kLess, kLessEqual, kGreater, kGreaterEqual,        // out is bool
  kLogicalAnd, kLogicalOr,                                              // bool inputs and out
};

enum class UnaryOp : uint8_t {
  kNeg, kAbs, kSquare, kSign, kRelu,                                    // numeric types
  kExp, kLog, kSqrt, kRsqrt, kTanh, kSigmoid, kSoftplus, kErf,          // floating types
  kGeluExact, kGeluTanh,
  kLogicalNot,                                                          // bool
};

// out[i] = op(a[i], b[i]); ix holds (out, a, b) strides (0 on broadcast dimensions). Arithmetic ops take
// f32, f64, f16, bf16, i32, i64, u8; comparisons also bool; logical ops only bool.
cudaError_t launch_binary(cudaStream_t stream, BinaryOp op, ScalarType type, void* out, const void* a, const void* b,
                          const StridedIndex<3>& ix, int64_t n);

// out[i] = op(x[i]); ix holds (out, x) strides; out has x's type.
cudaError_t launch_unary(cudaStream_t stream, UnaryOp op, ScalarType type, void* out, const void* x,
                         const StridedIndex<2>& ix, int64_t n);

// out[i] = min(max(x[i], lo), hi) with the bounds converted to the compute type.
cudaError_t launch_clip(cudaStream_t stream, ScalarType type, void* out, const void* x, double lo, double hi,
                        const StridedIndex<2>& ix, int64_t n);

}  // namespace gradflow::cuda
