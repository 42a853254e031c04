// CUDA gather and scatter_add (kernels in copy_kernels.cu). Indices are copied to the host and checked
// first, as on the CPU, so a bad index is a ValueError naming it and never an out-of-bounds access.
#include "core/ops/cuda/copy_kernels.h"
#include "core/ops/cuda/cuda_kernels.h"
#include "core/ops/index_layout.h"
#include "core/ops/internal.h"
#include "core/tensor/cuda/fill.h"
#include "core/tensor/cuda/launch.h"

namespace gradflow::cuda {
namespace {

// The indices as a contiguous i64 tensor on their device, after the shared host-side range check.
Tensor device_indices(std::string_view op, const Tensor& indices, int64_t n) {
  gradflow::checked_indices(op, indices, n);
  return indices.dtype() == kI64 && indices.is_contiguous() ? indices : cast_kernel(indices, kI64);
}

}  // namespace

TensorList gather_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor params = in[0].is_contiguous() ? in[0] : contiguous_kernel(in[0]);
  int axis = normalize_axis("gather", attrs.get<int64_t>("axis"), params.rank());
  AxisSplit s = split_at(params.shape(), axis);
  Tensor ids = device_indices("gather", in[1], s.n);
  Tensor out = empty(metas[0]);
  KernelScope scope(out.device());
  check(launch_gather(scope.stream(), dtype_size(params.dtype()), out.raw_data(), params.raw_data(),
                      static_cast<const int64_t*>(ids.raw_data()), s.outer, s.n, ids.numel(), s.inner),
        str_cat("gather of ", dtype_name(params.dtype()), " ", shape_str(params.shape())));
  return {out};
}

TensorList scatter_add_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  const TensorMeta& meta = metas[0];
  DType dtype = meta.dtype;
  if (dtype == kBool) throw_unsupported_dtype("scatter_add", dtype);
  int axis = normalize_axis("scatter_add", attrs.get<int64_t>("axis"), static_cast<int>(meta.shape.size()));
  AxisSplit s = split_at(meta.shape, axis);
  Tensor ids = device_indices("scatter_add", in[1], s.n);
  // f16/bf16 accumulate in an f32 buffer (as the CPU does) and are rounded once at the end.
  DType acc_dtype = is_half(dtype) ? kF32 : dtype;
  Tensor updates = in[0].dtype() == acc_dtype && in[0].is_contiguous() ? in[0] : cast_kernel(in[0], acc_dtype);
  Tensor acc = empty(meta.shape, acc_dtype, meta.device);
  fill(acc, 0.0);
  KernelScope scope(acc.device());
  check(launch_scatter_add(scope.stream(), scalar_type(acc_dtype), acc.raw_data(), updates.raw_data(),
                           static_cast<const int64_t*>(ids.raw_data()), s.outer, s.n, ids.numel(), s.inner),
        str_cat("scatter_add of ", dtype_name(dtype), " into ", shape_str(meta.shape)));
  return {acc_dtype == dtype ? acc : cast_kernel(acc, dtype)};
}

}  // namespace gradflow::cuda
