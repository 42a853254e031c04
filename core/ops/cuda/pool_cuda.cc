// CUDA wrappers of the pooling ops (kernels in pool_kernels.cu). The window geometry follows
// cpu/conv_cpu.cc: TensorFlow padding, "same" padding half before (rounded down), the rest after.
#include <algorithm>

#include "core/ops/cuda/cuda_kernels.h"
#include "core/ops/cuda/pool_kernels.h"
#include "core/ops/internal.h"
#include "core/tensor/cuda/launch.h"

namespace gradflow::cuda {
namespace {

using IntList = std::vector<int64_t>;

// x_shape: the NHWC input; out_shape: the pooled NHWC output.
PoolGeometry pool_geometry(const Shape& x_shape, const Shape& out_shape, const Attrs& a) {
  const IntList& pool = a.get<IntList>("pool_size");
  const IntList& strides = a.get<IntList>("strides");
  bool same = a.get<std::string>("padding") == "same";
  PoolGeometry g{x_shape[0], x_shape[1], x_shape[2], x_shape[3], out_shape[1], out_shape[2], pool[0], pool[1],
                 strides[0], strides[1], 0,          0};
  if (same) {
    g.pad_top = std::max<int64_t>((g.out_h - 1) * g.stride_h + g.k_h - g.in_h, 0) / 2;
    g.pad_left = std::max<int64_t>((g.out_w - 1) * g.stride_w + g.k_w - g.in_w, 0) / 2;
  }
  return g;
}

Tensor dense(const Tensor& t) { return t.is_contiguous() ? t : contiguous_kernel(t); }

}  // namespace

TensorList max_pool2d_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor x = dense(in[0]);
  Tensor out = empty(metas[0]);
  PoolGeometry g = pool_geometry(x.shape(), out.shape(), attrs);
  KernelScope scope(x.device());
  check(launch_max_pool(scope.stream(), scalar_type(x.dtype()), out.raw_data(), x.raw_data(), g),
        str_cat("max_pool2d of ", shape_str(x.shape())));
  return {out};
}

TensorList avg_pool2d_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor x = dense(in[0]);
  Tensor out = empty(metas[0]);
  PoolGeometry g = pool_geometry(x.shape(), out.shape(), attrs);
  KernelScope scope(x.device());
  check(launch_avg_pool(scope.stream(), scalar_type(x.dtype()), out.raw_data(), x.raw_data(), g),
        str_cat("avg_pool2d of ", shape_str(x.shape())));
  return {out};
}

// max_pool2d_grad(x, grad_output) -> dx like x.
TensorList max_pool2d_grad_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor x = dense(in[0]), grad = dense(in[1]);
  Tensor dx = empty(metas[0]);
  PoolGeometry g = pool_geometry(x.shape(), grad.shape(), attrs);
  KernelScope scope(x.device());
  check(launch_max_pool_grad(scope.stream(), scalar_type(x.dtype()), dx.raw_data(), x.raw_data(), grad.raw_data(), g),
        str_cat("max_pool2d_grad of ", shape_str(x.shape())));
  return {dx};
}

// max_pool2d_grad_grad(x, grad_grad_input) -> like the pooled output.
TensorList max_pool2d_grad_grad_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor x = dense(in[0]), grad_input = dense(in[1]);
  Tensor out = empty(metas[0]);
  PoolGeometry g = pool_geometry(x.shape(), out.shape(), attrs);
  KernelScope scope(x.device());
  check(launch_max_pool_grad_grad(scope.stream(), scalar_type(x.dtype()), out.raw_data(), x.raw_data(),
                                  grad_input.raw_data(), g),
        str_cat("max_pool2d_grad_grad of ", shape_str(x.shape())));
  return {out};
}

// avg_pool2d_grad(grad_output) -> dx of attr input_shape.
TensorList avg_pool2d_grad_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor grad = dense(in[0]);
  Tensor dx = empty(metas[0]);
  PoolGeometry g = pool_geometry(dx.shape(), grad.shape(), attrs);
  KernelScope scope(grad.device());
  check(launch_avg_pool_grad(scope.stream(), scalar_type(grad.dtype()), dx.raw_data(), grad.raw_data(), g),
        str_cat("avg_pool2d_grad to ", shape_str(dx.shape())));
  return {dx};
}

}  // namespace gradflow::cuda
