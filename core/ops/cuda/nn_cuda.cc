// CUDA wrappers of softmax, log_softmax and sparse softmax cross-entropy (kernels in reduce_kernels.cu).
// Rows along the softmax axis are read and written in place through strides; nothing is transposed.
#include "core/ops/cuda/cuda_kernels.h"
#include "core/ops/internal.h"
#include "core/tensor/cuda/launch.h"

namespace gradflow::cuda {
namespace {

TensorList softmax_like(RowOp op, const char* name, const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  const Tensor& x = in[0];
  int axis = normalize_axis(name, attrs.get<int64_t>("axis"), x.rank());
  Tensor out = empty(metas[0]);
  if (out.numel() == 0) return {out};
  Shape rows_shape;
  Strides out_strides, x_strides;
  for (int d = 0; d < x.rank(); ++d) {
    if (d == axis) continue;
    rows_shape.push_back(x.shape()[d]);
    out_strides.push_back(out.strides()[d]);
    x_strides.push_back(x.strides()[d]);
  }
  auto rows = strided_index<2>(name, rows_shape, {out_strides, x_strides});
  KernelScope scope(x.device());
  check(launch_row_op(scope.stream(), op, scalar_type(x.dtype()), out.raw_data(), x.raw_data(), nullptr, rows,
                      numel(rows_shape), x.shape()[axis], out.strides()[axis], x.strides()[axis]),
        str_cat(name, " of ", dtype_name(x.dtype()), " ", shape_str(x.shape())));
  return {out};
}

}  // namespace

TensorList softmax_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  return softmax_like(RowOp::kSoftmax, "softmax", in, attrs, metas);
}

TensorList log_softmax_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  return softmax_like(RowOp::kLogSoftmax, "log_softmax", in, attrs, metas);
}

TensorList sparse_xent_kernel(const TensorList& in, const Attrs&, const MetaList& metas) {
  constexpr std::string_view kName = "sparse_softmax_cross_entropy_with_logits";
  const Tensor& labels = in[0];
  const Tensor& logits = in[1];
  int64_t batch = logits.dim(0), classes = logits.dim(1);
  // Labels are checked on the host, as on the CPU, so a bad label is a ValueError, not a wild read.
  std::vector<int64_t> ids = labels.to_vector<int64_t>();
  for (int64_t i = 0; i < batch; ++i) {
    if (ids[i] < 0 || ids[i] >= classes) {
      throw ValueError(str_cat(kName, ": label ", ids[i], " at position ", i, " is outside [0, ", classes, ")"));
    }
  }
  Tensor out = empty(metas[0]);
  if (batch == 0) return {out};
  Tensor device_ids = labels.dtype() == kI64 && labels.is_contiguous() ? labels : cast_kernel(labels, kI64);
  auto rows = strided_index<2>(kName, Shape{batch}, {Strides{out.strides()[0]}, Strides{logits.strides()[0]}});
  KernelScope scope(logits.device());
  check(
      launch_row_op(scope.stream(), RowOp::kSparseXent, scalar_type(logits.dtype()), out.raw_data(), logits.raw_data(),
                    static_cast<const int64_t*>(device_ids.raw_data()), rows, batch, classes, 0, logits.strides()[1]),
      str_cat(kName, " of ", dtype_name(logits.dtype()), " ", shape_str(logits.shape())));
  return {out};
}

}  // namespace gradflow::cuda
