// CUDA wrappers of the elementwise ops (kernels in elementwise_kernels.cu and copy_kernels.cu): each
// allocates the output, describes the broadcast operands as a StridedIndex and launches.
#include <iterator>

#include "core/ops/cuda/copy_kernels.h"
#include "core/ops/cuda/cuda_kernels.h"
#include "core/tensor/cuda/launch.h"

namespace gradflow::cuda {
namespace {

// Op names for error messages, in the enums' order.
constexpr const char* kBinaryNames[] = {"add",        "sub",     "mul",           "div",         "pow",
                                        "maximum",    "minimum", "equal",         "not_equal",   "less",
                                        "less_equal", "greater", "greater_equal", "logical_and", "logical_or"};
constexpr const char* kUnaryNames[] = {"neg",   "abs",  "square",  "sign",     "relu", "exp",  "log",  "sqrt",
                                       "rsqrt", "tanh", "sigmoid", "softplus", "erf",  "gelu", "gelu", "logical_not"};
static_assert(std::size(kBinaryNames) == static_cast<size_t>(BinaryOp::kLogicalOr) + 1);
static_assert(std::size(kUnaryNames) == static_cast<size_t>(UnaryOp::kLogicalNot) + 1);

}  // namespace

TensorList binary(BinaryOp op, const TensorList& in, const MetaList& metas) {
  Tensor out = empty(metas[0]);
  const Tensor& a = in[0];
  const Tensor& b = in[1];
  const Shape& shape = out.shape();
  const char* name = kBinaryNames[static_cast<int>(op)];
  auto ix = strided_index<3>(name, shape, {out.strides(), broadcast_strides(a, shape), broadcast_strides(b, shape)});
  KernelScope scope(out.device());
  check(launch_binary(scope.stream(), op, scalar_type(a.dtype()), out.raw_data(), a.raw_data(), b.raw_data(), ix,
                      out.numel()),
        str_cat(name, " on ", dtype_name(a.dtype()), " ", shape_str(shape)));
  return {out};
}

TensorList unary(UnaryOp op, const TensorList& in, const MetaList& metas) {
  Tensor out = empty(metas[0]);
  const Tensor& x = in[0];
  const char* name = kUnaryNames[static_cast<int>(op)];
  auto ix = strided_index<2>(name, out.shape(), {out.strides(), x.strides()});
  KernelScope scope(out.device());
  check(launch_unary(scope.stream(), op, scalar_type(x.dtype()), out.raw_data(), x.raw_data(), ix, out.numel()),
        str_cat(name, " on ", dtype_name(x.dtype()), " ", shape_str(x.shape())));
  return {out};
}

TensorList gelu_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  return unary(attrs.get_or<bool>("approximate", false) ? UnaryOp::kGeluTanh : UnaryOp::kGeluExact, in, metas);
}

TensorList clip_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor out = empty(metas[0]);
  const Tensor& x = in[0];
  auto ix = strided_index<2>("clip", out.shape(), {out.strides(), x.strides()});
  KernelScope scope(out.device());
  check(launch_clip(scope.stream(), scalar_type(x.dtype()), out.raw_data(), x.raw_data(), attrs.get<double>("lo"),
                    attrs.get<double>("hi"), ix, out.numel()),
        "clip");
  return {out};
}

TensorList where_kernel(const TensorList& in, const Attrs&, const MetaList& metas) {
  Tensor out = empty(metas[0]);
  const Shape& shape = out.shape();
  auto ix = strided_index<4>("where", shape,
                             {out.strides(), broadcast_strides(in[0], shape), broadcast_strides(in[1], shape),
                              broadcast_strides(in[2], shape)});
  KernelScope scope(out.device());
  check(launch_where(scope.stream(), dtype_size(out.dtype()), out.raw_data(),
                     static_cast<const bool*>(in[0].raw_data()), in[1].raw_data(), in[2].raw_data(), ix, out.numel()),
        "where");
  return {out};
}

}  // namespace gradflow::cuda
