// Views (reshape, permute, slice, expand) that share storage, plus the copying conversions contiguous,
// cast and to_device. Views change only metadata, so one kernel serves every device.
#include <algorithm>
#include <numeric>

#include "core/ops/internal.h"
#include "core/ops/ops.h"

namespace gradflow {
namespace {

const std::vector<int64_t>& ints(const Attrs& a, std::string_view key) { return a.get<std::vector<int64_t>>(key); }
Shape to_shape(const std::vector<int64_t>& v) { return Shape(v.begin(), v.end()); }

// ---- reshape ----
Shape resolve_reshape(const Shape& from, const std::vector<int64_t>& to) {
  Shape out(to.begin(), to.end());
  int infer_at = -1;
  int64_t known = 1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      if (infer_at >= 0) throw ValueError(str_cat("reshape: more than one -1 in ", shape_str(to)));
      infer_at = static_cast<int>(i);
    } else if (out[i] < 0) {
      throw ValueError(str_cat("reshape: negative dimension in ", shape_str(to)));
    } else {
      known *= out[i];
    }
  }
  int64_t total = numel(from);
  if (infer_at >= 0) {
    if (known == 0 || total % known != 0) {
      throw ShapeError(str_cat("reshape: cannot reshape ", shape_str(from), " (", total, " elements) into ",
                                    shape_str(to)));
    }
    out[infer_at] = total / known;
  }
  if (numel(out) != total) {
    throw ShapeError(str_cat("reshape: cannot reshape ", shape_str(from), " (", total, " elements) into ",
                                  shape_str(to), " (", numel(out), " elements)"));
  }
  return out;
}
MetaList infer_reshape(const TensorList& in, const Attrs& a) {
  return {TensorMeta{resolve_reshape(in[0].shape(), ints(a, "shape")), in[0].dtype()}};
}
TensorList reshape_kernel(const TensorList& in, const Attrs&, const MetaList& m) {
  Tensor src = in[0].is_contiguous() ? in[0] : contiguous_kernel(in[0]);
  return {make_view(src, m[0].shape, contiguous_strides(m[0].shape), src.offset())};
}
TensorList reshape_grad(const GradContext& c) { return {c.grad_outputs[0].reshape(c.inputs[0].shape())}; }

// ---- permute ----
std::vector<int64_t> checked_permutation(const Tensor& t, const std::vector<int64_t>& axes) {
  if (static_cast<int>(axes.size()) != t.rank()) {
    throw ValueError(str_cat("permute: ", axes.size(), " axes given for a tensor of rank ", t.rank()));
  }
  std::vector<int64_t> perm;
  std::vector<bool> seen(t.rank(), false);
  for (int64_t a : axes) {
    int n = normalize_axis("permute", a, t.rank());
    if (seen[n]) throw ValueError(str_cat("permute: axis ", a, " appears twice in ", shape_str(axes)));
    seen[n] = true;
    perm.push_back(n);
  }
  return perm;
}
MetaList infer_permute(const TensorList& in, const Attrs& a) {
  std::vector<int64_t> perm = checked_permutation(in[0], ints(a, "axes"));
  Shape s;
  for (int64_t p : perm) s.push_back(in[0].shape()[p]);
  return {TensorMeta{s, in[0].dtype()}};
}
TensorList permute_kernel(const TensorList& in, const Attrs& a, const MetaList& m) {
  std::vector<int64_t> perm = checked_permutation(in[0], ints(a, "axes"));
  Strides st;
  for (int64_t p : perm) st.push_back(in[0].strides()[p]);
  return {make_view(in[0], m[0].shape, st, in[0].offset())};
}
TensorList permute_grad(const GradContext& c) {
  std::vector<int64_t> perm = checked_permutation(c.inputs[0], ints(c.attrs, "axes"));
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = static_cast<int64_t>(i);
  return {c.grad_outputs[0].permute(inverse)};
}

// ---- slice (axis, start, stop, step already normalized by Tensor::slice) ----
int64_t slice_length(int64_t start, int64_t stop, int64_t step) {
  if (step > 0) return stop > start ? (stop - start + step - 1) / step : 0;
  return start > stop ? (start - stop - step - 1) / -step : 0;
}
MetaList infer_slice(const TensorList& in, const Attrs& a) {
  Shape s = in[0].shape();
  int axis = static_cast<int>(a.get<int64_t>("axis"));
  s[axis] = slice_length(a.get<int64_t>("start"), a.get<int64_t>("stop"), a.get<int64_t>("step"));
  return {TensorMeta{s, in[0].dtype()}};
}
TensorList slice_kernel(const TensorList& in, const Attrs& a, const MetaList& m) {
  int axis = static_cast<int>(a.get<int64_t>("axis"));
  int64_t start = a.get<int64_t>("start"), step = a.get<int64_t>("step");
  Strides st = in[0].strides();
  int64_t offset = in[0].offset() + (m[0].shape[axis] > 0 ? start * st[axis] : 0);
  st[axis] *= step;
  return {make_view(in[0], m[0].shape, st, offset)};
}
TensorList slice_grad(const GradContext& c) {
  static const OpDef& op = op_def("slice_backward");
  Attrs attrs = c.attrs;
  attrs.set("input_shape", std::vector<int64_t>(c.inputs[0].shape().begin(), c.inputs[0].shape().end()));
  return {run_op1(op, {c.grad_outputs[0]}, attrs)};
}
// slice_backward: zeros of the input's shape with the gradient written into the sliced window.
MetaList infer_slice_backward(const TensorList& in, const Attrs& a) {
  return {TensorMeta{to_shape(ints(a, "input_shape")), in[0].dtype()}};
}
TensorList slice_backward_kernel(const TensorList& in, const Attrs& a, const MetaList& m) {
  Tensor out = zeros(m[0].shape, m[0].dtype, in[0].device());
  Tensor window = slice_kernel({out}, a, {TensorMeta{in[0].shape(), in[0].dtype()}})[0];
  copy_into(window, in[0]);
  return {out};
}
TensorList slice_backward_grad(const GradContext& c) {
  const Attrs& a = c.attrs;
  return {c.grad_outputs[0].slice(a.get<int64_t>("axis"), a.get<int64_t>("start"), a.get<int64_t>("stop"),
                                  a.get<int64_t>("step"))};
}

// ---- expand (broadcast_to) ----
MetaList infer_expand(const TensorList& in, const Attrs& a) {
  Shape target = to_shape(ints(a, "shape"));
  Shape b = broadcast_shapes("broadcast_to", in[0].shape(), target);
  if (b != target) {
    throw ShapeError(str_cat("broadcast_to: ", shape_str(in[0].shape()), " cannot be broadcast to ",
                                  shape_str(target)));
  }
  return {TensorMeta{target, in[0].dtype()}};
}
TensorList expand_kernel(const TensorList& in, const Attrs&, const MetaList& m) {
  return {make_view(in[0], m[0].shape, broadcast_strides(in[0], m[0].shape), in[0].offset())};
}
TensorList expand_grad(const GradContext& c) { return {sum_to(c.grad_outputs[0], c.inputs[0].shape())}; }

// ---- contiguous, cast, to_device: copies ----
MetaList infer_same(const TensorList& in, const Attrs&) { return {TensorMeta{in[0].shape(), in[0].dtype()}}; }
TensorList contiguous_op_kernel(const TensorList& in, const Attrs&, const MetaList&) { return {contiguous_kernel(in[0])}; }
TensorList identity_grad(const GradContext& c) { return {c.grad_outputs[0]}; }

MetaList infer_cast(const TensorList& in, const Attrs& a) { return {TensorMeta{in[0].shape(), a.get<DType>("dtype")}}; }
TensorList cast_op_kernel(const TensorList& in, const Attrs& a, const MetaList&) {
  return {cast_kernel(in[0], a.get<DType>("dtype"))};
}
TensorList cast_grad(const GradContext& c) {
  if (!is_floating(c.inputs[0].dtype()) || !is_floating(c.outputs[0].dtype())) return {Tensor()};
  return {c.grad_outputs[0].to(c.inputs[0].dtype())};
}

MetaList infer_to_device(const TensorList& in, const Attrs&) { return {TensorMeta{in[0].shape(), in[0].dtype()}}; }
TensorList to_device_kernel(const TensorList& in, const Attrs& a, const MetaList& m) {
  Device target = Device::parse(a.get<std::string>("device"));
  Tensor src = in[0].is_contiguous() ? in[0] : contiguous_kernel(in[0]);
  Tensor out = empty(m[0].shape, m[0].dtype, target);
  copy_bytes(out.raw_data(), target, src.raw_data(), src.device(), src.numel() * dtype_size(src.dtype()));
  return {out};
}
TensorList to_device_grad(const GradContext& c) { return {c.grad_outputs[0].to(c.inputs[0].device())}; }

}  // namespace

void register_view_ops(OpRegistry& r) {
  auto view = [&](std::string name, InferFn infer, KernelFn kernel, GradFn grad) {
    OpDef def{.name = std::move(name), .infer = infer, .grad = grad, .half_via_f32 = false, .device_independent = true};
    def.kernels[0] = kernel;
    r.define(std::move(def));
  };
  view("reshape", infer_reshape, reshape_kernel, reshape_grad);
  view("permute", infer_permute, permute_kernel, permute_grad);
  view("slice", infer_slice, slice_kernel, slice_grad);
  view("slice_backward", infer_slice_backward, slice_backward_kernel, slice_backward_grad);
  view("expand", infer_expand, expand_kernel, expand_grad);
  view("contiguous", infer_same, contiguous_op_kernel, identity_grad);
  view("cast", infer_cast, cast_op_kernel, cast_grad);
  view("to_device", infer_to_device, to_device_kernel, to_device_grad);
}

Tensor Tensor::reshape(Shape shape) const {
  static const OpDef& op = op_def("reshape");
  return run_op1(op, {*this}, {{"shape", std::vector<int64_t>(shape.begin(), shape.end())}});
}

Tensor Tensor::permute(std::vector<int64_t> axes) const {
  static const OpDef& op = op_def("permute");
  return run_op1(op, {*this}, {{"axes", std::move(axes)}});
}

Tensor Tensor::transpose(int64_t axis0, int64_t axis1) const {
  int a = normalize_axis("transpose", axis0, rank()), b = normalize_axis("transpose", axis1, rank());
  std::vector<int64_t> axes(rank());
  std::iota(axes.begin(), axes.end(), 0);
  std::swap(axes[a], axes[b]);
  return permute(std::move(axes));
}

Tensor Tensor::slice(int64_t axis, int64_t start, int64_t stop, int64_t step) const {
  if (step == 0) throw ValueError("slice: step must not be 0");
  int ax = normalize_axis("slice", axis, rank());
  int64_t n = shape()[ax];
  // Python slice semantics: negative bounds count from the end, then clamp.
  auto clamp = [&](int64_t v, int64_t lo, int64_t hi) { return std::min(std::max(v < 0 ? v + n : v, lo), hi); };
  int64_t b = step > 0 ? clamp(start, 0, n) : clamp(start, -1, n - 1);
  int64_t e = step > 0 ? clamp(stop, 0, n) : clamp(stop, -1, n - 1);
  static const OpDef& op = op_def("slice");
  return run_op1(op, {*this}, {{"axis", int64_t{ax}}, {"start", b}, {"stop", e}, {"step", step}});
}

Tensor Tensor::expand(Shape shape) const {
  static const OpDef& op = op_def("expand");
  return run_op1(op, {*this}, {{"shape", std::vector<int64_t>(shape.begin(), shape.end())}});
}

Tensor broadcast_to(const Tensor& x, const Shape& shape) { return x.shape() == shape ? x : x.expand(shape); }

Tensor Tensor::squeeze(int64_t axis) const {
  int a = normalize_axis("squeeze", axis, rank());
  if (shape()[a] != 1) {
    throw ShapeError(str_cat("squeeze: dimension ", a, " of ", shape_str(shape()), " is not 1"));
  }
  Shape s = shape();
  s.erase(s.begin() + a);
  return reshape(s);
}

Tensor Tensor::unsqueeze(int64_t axis) const {
  int a = normalize_axis("unsqueeze", axis, rank() + 1);
  Shape s = shape();
  s.insert(s.begin() + a, 1);
  return reshape(s);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  static const OpDef& op = op_def("contiguous");
  return run_op1(op, {*this});
}

Tensor Tensor::clone() const {
  static const OpDef& op = op_def("contiguous");
  return run_op1(op, {*this});
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == this->dtype()) return *this;
  static const OpDef& op = op_def("cast");
  return run_op1(op, {*this}, {{"dtype", dtype}});
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  static const OpDef& op = op_def("to_device");
  return run_op1(op, {*this}, {{"device", device.str()}});
}

}  // namespace gradflow
