// Reductions over any set of axes (sum, mean, max, min, logsumexp, argmax) and sum_to. Kernels:
// cpu/reduce_cpu.cc, cuda/reduce_cuda.cc.
#include "core/ops/internal.h"
#include "core/ops/ops.h"

namespace gradflow {
namespace {

absl::InlinedVector<int, 6> reduce_axes(const std::string& op, const Tensor& x, const Attrs& a) {
  return normalize_axes(op, a.get<std::vector<int64_t>>("axes"), x.rank());
}

// The output shape with reduced axes kept as 1 (what gradients broadcast back from).
Shape keepdims_shape(const Tensor& x, absl::Span<const int> axes) {
  Shape s = x.shape();
  for (int a : axes) s[a] = 1;
  return s;
}

template <const char* kName>
MetaList infer_reduce(const TensorList& in, const Attrs& a) {
  const Tensor& x = in[0];
  if (x.dtype() == kBool) throw_unsupported_dtype(kName, kBool);
  auto axes = reduce_axes(kName, x, a);
  bool keepdims = a.get<bool>("keepdims");
  Shape s;
  for (int d = 0; d < x.rank(); ++d) {
    bool reduced = std::find(axes.begin(), axes.end(), d) != axes.end();
    if (!reduced) {
      s.push_back(x.shape()[d]);
    } else {
      if (x.shape()[d] == 0 && std::string_view(kName) != "sum" && std::string_view(kName) != "mean") {
        throw ValueError(str_cat(kName, ": cannot reduce an empty dimension (axis ", d, " of ",
                                      shape_str(x.shape()), ")"));
      }
      if (keepdims) s.push_back(1);
    }
  }
  if (std::string_view(kName) == "logsumexp") check_float(kName, x);
  return {TensorMeta{s, x.dtype()}};
}

MetaList infer_argmax(const TensorList& in, const Attrs& a) {
  const Tensor& x = in[0];
  if (x.dtype() == kBool) throw_unsupported_dtype("argmax", kBool);
  int axis = normalize_axis("argmax", a.get<int64_t>("axis"), x.rank());
  if (x.shape()[axis] == 0) throw ValueError(str_cat("argmax: axis ", axis, " of ", shape_str(x.shape()), " is empty"));
  Shape s = x.shape();
  if (a.get<bool>("keepdims")) {
    s[axis] = 1;
  } else {
    s.erase(s.begin() + axis);
  }
  return {TensorMeta{s, kI64}};
}

// The gradient arriving at the reduced output, reshaped to keepdims form and broadcast to x.
Tensor broadcast_back(const GradContext& c, const Tensor& t) {
  auto axes = reduce_axes("reduce", c.inputs[0], c.attrs);
  return broadcast_to(t.reshape(keepdims_shape(c.inputs[0], axes)), c.inputs[0].shape());
}

TensorList sum_grad(const GradContext& c) { return {broadcast_back(c, c.grad_outputs[0])}; }
TensorList mean_grad(const GradContext& c) {
  const Tensor& x = c.inputs[0];
  double count = x.numel() == 0 ? 1.0 : static_cast<double>(x.numel()) / std::max<int64_t>(c.outputs[0].numel(), 1);
  return {div(broadcast_back(c, c.grad_outputs[0]), scalar(count, x.dtype(), x.device()))};
}
// Ties share the gradient equally, as in TensorFlow.
TensorList extremum_grad(const GradContext& c) {
  const Tensor& x = c.inputs[0];
  Tensor hit = equal(x, broadcast_back(c, c.outputs[0])).to(x.dtype());
  auto axes = reduce_axes("reduce", x, c.attrs);
  Tensor ties = sum(hit, Axes(axes.begin(), axes.end()), true);
  return {mul(div(hit, ties), broadcast_back(c, c.grad_outputs[0]))};
}
TensorList logsumexp_grad(const GradContext& c) {
  const Tensor& x = c.inputs[0];
  return {mul(exp(sub(x, broadcast_back(c, c.outputs[0]))), broadcast_back(c, c.grad_outputs[0]))};
}

constexpr char k_sum[] = "sum";
constexpr char k_mean[] = "mean";
constexpr char k_max[] = "max";
constexpr char k_min[] = "min";
constexpr char k_logsumexp[] = "logsumexp";

Tensor reduce(const char* name, const Tensor& x, const Axes& axes, bool keepdims) {
  return run_op1(op_def(name), {x}, {{"axes", axes}, {"keepdims", keepdims}});
}

}  // namespace

void register_reduce_ops(OpRegistry& r) {
  r.define({.name = "sum", .infer = infer_reduce<k_sum>, .grad = sum_grad});
  r.define({.name = "mean", .infer = infer_reduce<k_mean>, .grad = mean_grad});
  r.define({.name = "max", .infer = infer_reduce<k_max>, .grad = extremum_grad});
  r.define({.name = "min", .infer = infer_reduce<k_min>, .grad = extremum_grad});
  r.define({.name = "logsumexp", .infer = infer_reduce<k_logsumexp>, .grad = logsumexp_grad});
  r.define({.name = "argmax", .infer = infer_argmax});
}

Tensor sum(const Tensor& x, const Axes& axes, bool keepdims) { return reduce("sum", x, axes, keepdims); }
Tensor mean(const Tensor& x, const Axes& axes, bool keepdims) { return reduce("mean", x, axes, keepdims); }
Tensor max(const Tensor& x, const Axes& axes, bool keepdims) { return reduce("max", x, axes, keepdims); }
Tensor min(const Tensor& x, const Axes& axes, bool keepdims) { return reduce("min", x, axes, keepdims); }
Tensor logsumexp(const Tensor& x, const Axes& axes, bool keepdims) { return reduce("logsumexp", x, axes, keepdims); }

Tensor argmax(const Tensor& x, int64_t axis, bool keepdims) {
  static const OpDef& op = op_def("argmax");
  return run_op1(op, {x}, {{"axis", axis}, {"keepdims", keepdims}});
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  int lead = x.rank() - static_cast<int>(shape.size());
  if (lead < 0) {
    throw ShapeError(str_cat("sum_to: cannot reduce ", shape_str(x.shape()), " to the larger rank ", shape_str(shape)));
  }
  Axes axes;
  for (int d = 0; d < x.rank(); ++d) {
    if (d < lead) {
      axes.push_back(d);
    } else if (shape[d - lead] == 1 && x.shape()[d] != 1) {
      axes.push_back(d);
    } else if (shape[d - lead] != x.shape()[d]) {
      throw ShapeError(str_cat("sum_to: ", shape_str(x.shape()), " does not broadcast from ", shape_str(shape)));
    }
  }
  Tensor s = axes.empty() ? x : sum(x, axes, true);
  return s.reshape(shape);
}

}  // namespace gradflow
