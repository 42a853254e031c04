// Binds the CUDA kernels to the ops, by name. Called once by register_all_ops() after the CPU kernels;
// every op with a CPU kernel has a CUDA kernel here (views, concat and to_device are device-independent).
#include "core/ops/cuda/cuda_kernels.h"
#include "core/ops/internal.h"

namespace gradflow {

void register_cuda_kernels(OpRegistry& r) {
  using namespace cuda;  // NOLINT: the kernel names read better unqualified in this table
  constexpr DeviceType kDev = DeviceType::kCUDA;
  r.set_kernel("cast_copy", kDev, cast_copy_kernel);
  r.set_kernel("contiguous_copy", kDev, contiguous_copy_kernel);
  r.set_kernel("copy_into", kDev, copy_into_kernel);

  r.set_kernel("add", kDev, binary_kernel<BinaryOp::kAdd>);
  r.set_kernel("sub", kDev, binary_kernel<BinaryOp::kSub>);
  r.set_kernel("mul", kDev, binary_kernel<BinaryOp::kMul>);
  r.set_kernel("div", kDev, binary_kernel<BinaryOp::kDiv>);
  r.set_kernel("pow", kDev, binary_kernel<BinaryOp::kPow>);
  r.set_kernel("maximum", kDev, binary_kernel<BinaryOp::kMaximum>);
  r.set_kernel("minimum", kDev, binary_kernel<BinaryOp::kMinimum>);
  r.set_kernel("equal", kDev, binary_kernel<BinaryOp::kEqual>);
  r.set_kernel("not_equal", kDev, binary_kernel<BinaryOp::kNotEqual>);
  r.set_kernel("less", kDev, binary_kernel<BinaryOp::kLess>);
  r.set_kernel("less_equal", kDev, binary_kernel<BinaryOp::kLessEqual>);
  r.set_kernel("greater", kDev, binary_kernel<BinaryOp::kGreater>);
  r.set_kernel("greater_equal", kDev, binary_kernel<BinaryOp::kGreaterEqual>);
  r.set_kernel("logical_and", kDev, binary_kernel<BinaryOp::kLogicalAnd>);
  r.set_kernel("logical_or", kDev, binary_kernel<BinaryOp::kLogicalOr>);
  r.set_kernel("logical_not", kDev, unary_kernel<UnaryOp::kLogicalNot>);

  r.set_kernel("neg", kDev, unary_kernel<UnaryOp::kNeg>);
  r.set_kernel("abs", kDev, unary_kernel<UnaryOp::kAbs>);
  r.set_kernel("square", kDev, unary_kernel<UnaryOp::kSquare>);
  r.set_kernel("sign", kDev, unary_kernel<UnaryOp::kSign>);
  r.set_kernel("relu", kDev, unary_kernel<UnaryOp::kRelu>);
  r.set_kernel("exp", kDev, unary_kernel<UnaryOp::kExp>);
  r.set_kernel("log", kDev, unary_kernel<UnaryOp::kLog>);
  r.set_kernel("sqrt", kDev, unary_kernel<UnaryOp::kSqrt>);
  r.set_kernel("rsqrt", kDev, unary_kernel<UnaryOp::kRsqrt>);
  r.set_kernel("tanh", kDev, unary_kernel<UnaryOp::kTanh>);
  r.set_kernel("sigmoid", kDev, unary_kernel<UnaryOp::kSigmoid>);
  r.set_kernel("softplus", kDev, unary_kernel<UnaryOp::kSoftplus>);
  r.set_kernel("erf", kDev, unary_kernel<UnaryOp::kErf>);
  r.set_kernel("gelu", kDev, gelu_kernel);
  r.set_kernel("clip", kDev, clip_kernel);
  r.set_kernel("where", kDev, where_kernel);

  r.set_kernel("sum", kDev, reduce_kernel<ReduceOp::kSum>);
  r.set_kernel("mean", kDev, reduce_kernel<ReduceOp::kMean>);
  r.set_kernel("max", kDev, reduce_kernel<ReduceOp::kMax>);
  r.set_kernel("min", kDev, reduce_kernel<ReduceOp::kMin>);
  r.set_kernel("logsumexp", kDev, reduce_kernel<ReduceOp::kLogSumExp>);
  r.set_kernel("argmax", kDev, reduce_kernel<ReduceOp::kArgMax>);

  r.set_kernel("matmul", kDev, matmul_kernel);

  r.set_kernel("softmax", kDev, softmax_kernel);
  r.set_kernel("log_softmax", kDev, log_softmax_kernel);
  r.set_kernel("sparse_softmax_cross_entropy_with_logits", kDev, sparse_xent_kernel);

  r.set_kernel("gather", kDev, gather_kernel);
  r.set_kernel("scatter_add", kDev, scatter_add_kernel);

  r.set_kernel("conv2d", kDev, conv2d_kernel);
  r.set_kernel("conv2d_backprop_input", kDev, conv2d_backprop_input_kernel);
  r.set_kernel("conv2d_backprop_filter", kDev, conv2d_backprop_filter_kernel);
  r.set_kernel("max_pool2d", kDev, max_pool2d_kernel);
  r.set_kernel("max_pool2d_grad", kDev, max_pool2d_grad_kernel);
  r.set_kernel("max_pool2d_grad_grad", kDev, max_pool2d_grad_grad_kernel);
  r.set_kernel("avg_pool2d", kDev, avg_pool2d_kernel);
  r.set_kernel("avg_pool2d_grad", kDev, avg_pool2d_grad_kernel);
}

}  // namespace gradflow
