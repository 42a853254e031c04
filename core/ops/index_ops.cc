// Joining and indexing: concat and gather are primitives (kernels in cpu/index_cpu.cc); stack, split,
// one_hot and embedding_lookup are composed from primitives.
#include "core/ops/internal.h"
#include "core/ops/ops.h"

namespace gradflow {
namespace {

MetaList infer_concat(const TensorList& in, const Attrs& a) {
  if (in.empty()) throw ValueError("concat: no tensors given");
  const Tensor& first = in[0];
  if (first.rank() == 0) throw ShapeError("concat: cannot concatenate scalars (use stack)");
  int axis = normalize_axis("concat", a.get<int64_t>("axis"), first.rank());
  Shape s = first.shape();
  s[axis] = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const Tensor& t = in[i];
    check_same_dtype("concat", first, t);
    bool ok = t.rank() == first.rank();
    for (int d = 0; ok && d < t.rank(); ++d) ok = d == axis || t.shape()[d] == first.shape()[d];
    if (!ok) {
      throw ShapeError(str_cat("concat: tensor ", i, " has shape ", shape_str(t.shape()), ", incompatible with ",
                                    shape_str(first.shape()), " along axis ", axis));
    }
    s[axis] += t.shape()[axis];
  }
  return {TensorMeta{s, first.dtype()}};
}

TensorList concat_kernel(const TensorList& in, const Attrs& a, const MetaList& m) {
  Tensor out = empty(m[0].shape, m[0].dtype, in[0].device());
  int axis = normalize_axis("concat", a.get<int64_t>("axis"), out.rank());
  int64_t at = 0;
  for (const Tensor& t : in) {
    int64_t len = t.shape()[axis];
    Strides st = out.strides();
    copy_into(make_view(out, t.shape(), st, at * st[axis]), t);
    at += len;
  }
  return {out};
}

TensorList concat_grad(const GradContext& c) {
  int axis = normalize_axis("concat", c.attrs.get<int64_t>("axis"), c.grad_outputs[0].rank());
  TensorList grads;
  int64_t at = 0;
  for (const Tensor& t : c.inputs) {
    int64_t len = t.shape()[axis];
    grads.push_back(c.grad_outputs[0].slice(axis, at, at + len));
    at += len;
  }
  return grads;
}

void check_indices(std::string_view op, const Tensor& indices) {
  if (indices.dtype() != kI32 && indices.dtype() != kI64 && indices.dtype() != kU8) {
    throw DTypeError(str_cat(op, ": indices must be integers, got ", dtype_name(indices.dtype())));
  }
}

MetaList infer_gather(const TensorList& in, const Attrs& a) {
  const Tensor& params = in[0];
  const Tensor& indices = in[1];
  check_indices("gather", indices);
  if (params.rank() == 0) throw ShapeError("gather: params must have rank >= 1");
  int axis = normalize_axis("gather", a.get<int64_t>("axis"), params.rank());
  Shape s(params.shape().begin(), params.shape().begin() + axis);
  s.insert(s.end(), indices.shape().begin(), indices.shape().end());
  s.insert(s.end(), params.shape().begin() + axis + 1, params.shape().end());
  return {TensorMeta{s, params.dtype()}};
}

TensorList gather_grad(const GradContext& c) {
  static const OpDef& op = op_def("scatter_add");
  Attrs attrs = c.attrs;
  const Shape& ps = c.inputs[0].shape();
  attrs.set("params_shape", std::vector<int64_t>(ps.begin(), ps.end()));
  return {run_op1(op, {c.grad_outputs[0], c.inputs[1]}, attrs), Tensor()};
}

// scatter_add(updates, indices): zeros of params_shape with each update row added at its index; the
// gradient of gather.
MetaList infer_scatter_add(const TensorList& in, const Attrs& a) {
  check_indices("scatter_add", in[1]);
  const auto& ps = a.get<std::vector<int64_t>>("params_shape");
  return {TensorMeta{Shape(ps.begin(), ps.end()), in[0].dtype()}};
}

TensorList scatter_add_grad(const GradContext& c) { return {gather(c.grad_outputs[0], c.inputs[1], c.attrs.get<int64_t>("axis")), Tensor()}; }

}  // namespace

void register_index_ops(OpRegistry& r) {
  // concat only copies through copy_into, so one kernel serves every device that has copy_into.
  OpDef concat_def{.name = "concat", .infer = infer_concat, .grad = concat_grad, .half_via_f32 = false,
                   .device_independent = true};
  concat_def.kernels[0] = concat_kernel;
  r.define(std::move(concat_def));
  r.define({.name = "gather", .infer = infer_gather, .grad = gather_grad, .half_via_f32 = false});
  r.define({.name = "scatter_add", .infer = infer_scatter_add, .grad = scatter_add_grad});
}

Tensor concat(const std::vector<Tensor>& tensors, int64_t axis) {
  static const OpDef& op = op_def("concat");
  return run_op1(op, TensorList(tensors.begin(), tensors.end()), {{"axis", axis}});
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t axis) {
  if (tensors.empty()) throw ValueError("stack: no tensors given");
  for (const Tensor& t : tensors) {
    if (t.shape() != tensors[0].shape()) {
      throw ShapeError(str_cat("stack: shapes differ (", shape_str(tensors[0].shape()), " and ",
                                    shape_str(t.shape()), ")"));
    }
  }
  int a = normalize_axis("stack", axis, tensors[0].rank() + 1);
  std::vector<Tensor> expanded;
  for (const Tensor& t : tensors) expanded.push_back(t.unsqueeze(a));
  return concat(expanded, a);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis) {
  int a = normalize_axis("split", axis, x.rank());
  int64_t total = 0;
  for (int64_t s : sizes) {
    if (s < 0) throw ValueError(str_cat("split: negative size ", s));
    total += s;
  }
  if (total != x.shape()[a]) {
    throw ShapeError(str_cat("split: sizes add up to ", total, " but axis ", a, " of ", shape_str(x.shape()),
                                  " has ", x.shape()[a]));
  }
  std::vector<Tensor> out;
  int64_t at = 0;
  for (int64_t s : sizes) {
    out.push_back(x.slice(a, at, at + s));
    at += s;
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, int64_t num_splits, int64_t axis) {
  int a = normalize_axis("split", axis, x.rank());
  if (num_splits <= 0 || x.shape()[a] % num_splits != 0) {
    throw ShapeError(str_cat("split: axis ", a, " of ", shape_str(x.shape()), " does not divide into ",
                                  num_splits, " equal parts"));
  }
  return split(x, std::vector<int64_t>(num_splits, x.shape()[a] / num_splits), a);
}

Tensor gather(const Tensor& params, const Tensor& indices, int64_t axis) {
  static const OpDef& op = op_def("gather");
  return run_op1(op, {params, indices}, {{"axis", axis}});
}

Tensor one_hot(const Tensor& indices, int64_t depth, DType dtype) {
  check_indices("one_hot", indices);
  if (depth < 0) throw ValueError(str_cat("one_hot: negative depth ", depth));
  Tensor classes = arange(0, static_cast<double>(depth), 1, indices.dtype(), indices.device());
  return equal(indices.unsqueeze(-1), classes).to(dtype);
}

Tensor embedding_lookup(const Tensor& table, const Tensor& ids) {
  if (table.rank() != 2) {
    throw ShapeError(str_cat("embedding_lookup: table must be [vocab, dim], got ", shape_str(table.shape())));
  }
  return gather(table, ids, 0);
}

}  // namespace gradflow
