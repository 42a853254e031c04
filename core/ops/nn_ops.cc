// Neural-network ops. softmax, log_softmax and sparse cross-entropy are primitives with their own
// kernels (cpu/nn_cpu.cc); dropout, layer and batch normalization and dense cross-entropy are composed
// from primitives, so their gradients (and second derivatives) come from those.
#include "core/ops/internal.h"
#include "core/ops/ops.h"

namespace gradflow {
namespace {

MetaList infer_softmax(const TensorList& in, const Attrs& a) {
  check_float("softmax", in[0]);
  if (in[0].rank() == 0) throw ShapeError("softmax: input must have rank >= 1, got a scalar");
  normalize_axis("softmax", a.get<int64_t>("axis"), in[0].rank());
  return {TensorMeta{in[0].shape(), in[0].dtype()}};
}

TensorList softmax_grad(const GradContext& c) {
  const Tensor& y = c.outputs[0];
  const Tensor& g = c.grad_outputs[0];
  int64_t axis = c.attrs.get<int64_t>("axis");
  return {mul(y, sub(g, sum(mul(g, y), {axis}, true)))};
}

TensorList log_softmax_grad(const GradContext& c) {
  const Tensor& g = c.grad_outputs[0];
  int64_t axis = c.attrs.get<int64_t>("axis");
  return {sub(g, mul(exp(c.outputs[0]), sum(g, {axis}, true)))};
}

MetaList infer_sparse_xent(const TensorList& in, const Attrs&) {
  const Tensor& labels = in[0];
  const Tensor& logits = in[1];
  check_float("sparse_softmax_cross_entropy_with_logits", logits);
  if (labels.dtype() != kI32 && labels.dtype() != kI64 && labels.dtype() != kU8) {
    throw DTypeError(str_cat("sparse_softmax_cross_entropy_with_logits: labels must be integers, got ",
                                  dtype_name(labels.dtype())));
  }
  if (logits.rank() != 2 || labels.rank() != 1 || labels.dim(0) != logits.dim(0)) {
    throw ShapeError(str_cat("sparse_softmax_cross_entropy_with_logits: labels ", shape_str(labels.shape()),
                                  " and logits ", shape_str(logits.shape()),
                                  " must be [batch] and [batch, classes] with the same batch"));
  }
  return {TensorMeta{labels.shape(), logits.dtype()}};
}

TensorList sparse_xent_grad(const GradContext& c) {
  const Tensor& labels = c.inputs[0];
  const Tensor& logits = c.inputs[1];
  Tensor probs = softmax(logits, -1);
  Tensor target = one_hot(labels, logits.dim(1), logits.dtype());
  return {Tensor(), mul(sub(probs, target), c.grad_outputs[0].unsqueeze(-1))};
}

}  // namespace

void register_nn_ops(OpRegistry& r) {
  r.define({.name = "softmax", .infer = infer_softmax, .grad = softmax_grad});
  r.define({.name = "log_softmax", .infer = infer_softmax, .grad = log_softmax_grad});
  r.define({.name = "sparse_softmax_cross_entropy_with_logits", .infer = infer_sparse_xent, .grad = sparse_xent_grad});
}

Tensor softmax(const Tensor& logits, int64_t axis) {
  static const OpDef& op = op_def("softmax");
  return run_op1(op, {logits}, {{"axis", axis}});
}

Tensor log_softmax(const Tensor& logits, int64_t axis) {
  static const OpDef& op = op_def("log_softmax");
  return run_op1(op, {logits}, {{"axis", axis}});
}

Tensor sparse_softmax_cross_entropy_with_logits(const Tensor& labels, const Tensor& logits) {
  static const OpDef& op = op_def("sparse_softmax_cross_entropy_with_logits");
  return run_op1(op, {labels, logits});
}

Tensor softmax_cross_entropy_with_logits(const Tensor& labels, const Tensor& logits) {
  if (labels.shape() != logits.shape()) {
    throw ShapeError(str_cat("softmax_cross_entropy_with_logits: labels ", shape_str(labels.shape()),
                                  " and logits ", shape_str(logits.shape()), " differ"));
  }
  return neg(sum(mul(labels, log_softmax(logits, -1)), {-1}));
}

Tensor dropout(const Tensor& x, double rate, std::optional<uint64_t> seed) {
  if (!(rate >= 0 && rate < 1)) throw ValueError(str_cat("dropout: rate ", rate, " is not in [0, 1)"));
  check_float("dropout", x);
  if (rate == 0) return x;
  Tensor keep = greater_equal(random_uniform(x.shape(), 0, 1, x.dtype(), x.device(), seed),
                              scalar(rate, x.dtype(), x.device()));
  return where(keep, x * (1.0 / (1.0 - rate)), zeros_like(x));
}

Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double epsilon) {
  check_float("layer_norm", x);
  if (x.rank() == 0 || gamma.shape() != Shape{x.dim(-1)} || beta.shape() != Shape{x.dim(-1)}) {
    throw ShapeError(str_cat("layer_norm: gamma ", shape_str(gamma.shape()), " and beta ",
                                  shape_str(beta.shape()), " must be [", x.rank() ? x.dim(-1) : 0, "] for input ",
                                  shape_str(x.shape())));
  }
  Tensor mu = mean(x, {-1}, true);
  Tensor centered = sub(x, mu);
  Tensor var = mean(square(centered), {-1}, true);
  return add(mul(mul(centered, rsqrt(var + epsilon)), gamma), beta);
}

namespace {
Axes all_but_last(const Tensor& x) {
  Axes axes;
  for (int d = 0; d + 1 < x.rank(); ++d) axes.push_back(d);
  return axes;
}
void check_channels(std::string_view op, const Tensor& x, std::initializer_list<const Tensor*> params) {
  check_float(op, x);
  if (x.rank() < 2) throw ShapeError(str_cat(op, ": input must have rank >= 2, got ", shape_str(x.shape())));
  for (const Tensor* p : params) {
    if (p->shape() != Shape{x.dim(-1)}) {
      throw ShapeError(str_cat(op, ": parameter of shape ", shape_str(p->shape()), " does not match ",
                                    x.dim(-1), " channels of input ", shape_str(x.shape())));
    }
  }
}
}  // namespace

BatchNormResult batch_norm_training(const Tensor& x, const Tensor& gamma, const Tensor& beta, double epsilon) {
  check_channels("batch_norm", x, {&gamma, &beta});
  Axes axes = all_but_last(x);
  Tensor mu = mean(x, axes);
  Tensor centered = sub(x, mu);
  Tensor var = mean(square(centered), axes);
  Tensor y = add(mul(mul(centered, rsqrt(var + epsilon)), gamma), beta);
  return {y, mu, var};
}

Tensor batch_norm_inference(const Tensor& x, const Tensor& mu, const Tensor& variance, const Tensor& gamma,
                            const Tensor& beta, double epsilon) {
  check_channels("batch_norm", x, {&mu, &variance, &gamma, &beta});
  Tensor scale = mul(rsqrt(variance + epsilon), gamma);
  return add(mul(sub(x, mu), scale), beta);
}

}  // namespace gradflow
