// The KernelFns of the CUDA backend, one per op (register_cuda.cc binds them to the ops by name). Each
// allocates its outputs on the inputs' device, launches on that device's stream and throws
// DeviceError (with the CUDA error string) when a launch fails. f16 and bf16 inputs arrive as they are
// (OpDef::half_via_f32 applies to the CPU only) and are computed in float.
#pragma once

#include "core/ops/cuda/elementwise_kernels.h"
#include "core/ops/cuda/reduce_kernels.h"
#include "core/ops/op.h"

namespace gradflow::cuda {

// copy_cuda.cc: cast_copy, contiguous_copy, copy_into (any dtype pair, any strides).
TensorList cast_copy_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);
TensorList contiguous_copy_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);
TensorList copy_into_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);

// elementwise_cuda.cc
TensorList binary(BinaryOp op, const TensorList& in, const MetaList& metas);
TensorList unary(UnaryOp op, const TensorList& in, const MetaList& metas);
template <BinaryOp kOp>
TensorList binary_kernel(const TensorList& in, const Attrs&, const MetaList& metas) {
  return binary(kOp, in, metas);
}
template <UnaryOp kOp>
TensorList unary_kernel(const TensorList& in, const Attrs&, const MetaList& metas) {
  return unary(kOp, in, metas);
}
TensorList gelu_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);
TensorList clip_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);
TensorList where_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);

// reduce_cuda.cc: sum, mean, max, min, logsumexp over "axes"; argmax over "axis".
TensorList reduce(ReduceOp op, const TensorList& in, const Attrs& attrs, const MetaList& metas);
template <ReduceOp kOp>
TensorList reduce_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  return reduce(kOp, in, attrs, metas);
}

// nn_cuda.cc
TensorList softmax_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);
TensorList log_softmax_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);
TensorList sparse_xent_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);

// matmul_cuda.cc (cuBLAS)
TensorList matmul_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);

// index_cuda.cc
TensorList gather_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);
TensorList scatter_add_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);

// conv_cuda.cc (cuDNN)
TensorList conv2d_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);
TensorList conv2d_backprop_input_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);
TensorList conv2d_backprop_filter_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);

// pool_cuda.cc
TensorList max_pool2d_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);
TensorList max_pool2d_grad_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);
TensorList max_pool2d_grad_grad_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);
TensorList avg_pool2d_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);
TensorList avg_pool2d_grad_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas);

}  // namespace gradflow::cuda
