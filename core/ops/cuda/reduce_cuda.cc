// CUDA wrappers of the reductions (kernels in reduce_kernels.cu). The input is described, without
// copying, as [kept dimensions] x [reduced dimensions] with its own strides; the kernels pick a block per
// output or a thread per output from that layout.
#include <iterator>

#include "core/ops/cuda/cuda_kernels.h"
#include "core/tensor/cuda/launch.h"

namespace gradflow::cuda {
namespace {

constexpr const char* kReduceNames[] = {"sum", "mean", "max", "min", "logsumexp", "argmax"};
static_assert(std::size(kReduceNames) == static_cast<size_t>(ReduceOp::kArgMax) + 1);

ReduceShape reduce_shape(std::string_view op, const Tensor& x, absl::Span<const int> axes) {
  std::vector<bool> is_reduced(x.rank(), false);
  for (int a : axes) is_reduced[a] = true;
  Shape kept_shape, reduced_shape;
  Strides kept_strides, reduced_strides;
  for (int d = 0; d < x.rank(); ++d) {
    (is_reduced[d] ? reduced_shape : kept_shape).push_back(x.shape()[d]);
    (is_reduced[d] ? reduced_strides : kept_strides).push_back(x.strides()[d]);
  }
  ReduceShape shape;
  shape.kept = strided_index<1>(op, kept_shape, {kept_strides});
  shape.reduced = strided_index<1>(op, reduced_shape, {reduced_strides});
  shape.outer = numel(kept_shape);
  shape.r = numel(reduced_shape);
  return shape;
}

}  // namespace

TensorList reduce(ReduceOp op, const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  const Tensor& x = in[0];
  const char* name = kReduceNames[static_cast<int>(op)];
  absl::InlinedVector<int, 6> axes;
  if (op == ReduceOp::kArgMax) {
    axes.push_back(normalize_axis(name, attrs.get<int64_t>("axis"), x.rank()));
  } else {
    axes = normalize_axes(name, attrs.get<std::vector<int64_t>>("axes"), x.rank());
  }
  Tensor out = empty(metas[0]);
  ReduceShape shape = reduce_shape(name, x, axes);
  ReducePlan plan = plan_reduce(shape);
  Tensor workspace;
  if (plan.workspace_bytes > 0) workspace = empty({static_cast<int64_t>(plan.workspace_bytes)}, kU8, x.device());
  KernelScope scope(x.device());
  check(launch_reduce(scope.stream(), op, scalar_type(x.dtype()), out.raw_data(), x.raw_data(), shape, plan,
                      workspace.defined() ? workspace.raw_data() : nullptr),
        str_cat(name, " of ", dtype_name(x.dtype()), " ", shape_str(x.shape())));
  return {out};
}

}  // namespace gradflow::cuda
