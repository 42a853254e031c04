// Elementwise ops: shape/dtype rules, gradients and public functions. Kernels: cpu/elementwise_cpu.cc,
// cuda/elementwise_cuda.cc.
#include <cmath>

#include "core/ops/internal.h"
#include "core/ops/ops.h"

namespace gradflow {
namespace {

Tensor like_scalar(const Tensor& t, double v) { return scalar(v, t.dtype(), t.device()); }

MetaList infer_binary(std::string_view op, const TensorList& in, bool bool_result) {
  check_same_dtype(op, in[0], in[1]);
  return {TensorMeta{broadcast_shapes(op, in[0].shape(), in[1].shape()), bool_result ? kBool : in[0].dtype()}};
}
template <const char* kName>
MetaList infer_arithmetic(const TensorList& in, const Attrs&) {
  if (in[0].dtype() == kBool) throw_unsupported_dtype(kName, kBool);
  return infer_binary(kName, in, false);
}
template <const char* kName>
MetaList infer_compare(const TensorList& in, const Attrs&) { return infer_binary(kName, in, true); }
template <const char* kName>
MetaList infer_logical(const TensorList& in, const Attrs&) {
  for (const Tensor& t : in) {
    if (t.dtype() != kBool) {
      throw DTypeError(str_cat(kName, ": expected bool tensors, got ", dtype_name(t.dtype())));
    }
  }
  if (in.size() == 1) return {TensorMeta{in[0].shape(), kBool}};
  return infer_binary(kName, in, true);
}
template <const char* kName>
MetaList infer_unary_float(const TensorList& in, const Attrs&) {
  check_float(kName, in[0]);
  return {TensorMeta{in[0].shape(), in[0].dtype()}};
}
template <const char* kName>
MetaList infer_unary_numeric(const TensorList& in, const Attrs&) {
  if (in[0].dtype() == kBool) throw_unsupported_dtype(kName, kBool);
  return {TensorMeta{in[0].shape(), in[0].dtype()}};
}

MetaList infer_where(const TensorList& in, const Attrs&) {
  if (in[0].dtype() != kBool) {
    throw DTypeError(str_cat("where: the condition must be bool, got ", dtype_name(in[0].dtype())));
  }
  check_same_dtype("where", in[1], in[2]);
  Shape s = broadcast_shapes("where", in[0].shape(), in[1].shape());
  return {TensorMeta{broadcast_shapes("where", s, in[2].shape()), in[1].dtype()}};
}

// ---- gradients (dy/dx expressed with ops, so they are differentiable again) ----
#define GF_GRAD(name) TensorList name(const GradContext& c)
#define A c.inputs[0]
#define B c.inputs[1]
#define Y c.outputs[0]
#define G c.grad_outputs[0]
// Input k's gradient, computed only when a source needs it (a constant operand, such as a mask, a scale
// or dropout's zero, gets none).
#define IF_NEEDED(k, expr) (c.needs(k) ? (expr) : Tensor())

GF_GRAD(add_grad) { return {IF_NEEDED(0, sum_to(G, A.shape())), IF_NEEDED(1, sum_to(G, B.shape()))}; }
GF_GRAD(sub_grad) { return {IF_NEEDED(0, sum_to(G, A.shape())), IF_NEEDED(1, sum_to(neg(G), B.shape()))}; }
GF_GRAD(mul_grad) { return {IF_NEEDED(0, sum_to(mul(G, B), A.shape())), IF_NEEDED(1, sum_to(mul(G, A), B.shape()))}; }
GF_GRAD(div_grad) {
  return {IF_NEEDED(0, sum_to(div(G, B), A.shape())), IF_NEEDED(1, sum_to(neg(div(mul(G, Y), B)), B.shape()))};
}
GF_GRAD(pow_grad) {
  Tensor da, db;
  if (c.needs(0)) da = sum_to(mul(G, mul(B, pow(A, sub(B, like_scalar(B, 1))))), A.shape());
  if (c.needs(1)) {
    Tensor positive = greater(A, like_scalar(A, 0));
    Tensor safe_a = where(positive, A, ones_like(A));
    db = sum_to(where(positive, mul(G, mul(Y, log(safe_a))), zeros_like(Y)), B.shape());
  }
  return {da, db};
}
GF_GRAD(maximum_grad) {
  Tensor pick_a = greater_equal(A, B);
  Tensor zero = zeros_like(G);
  return {IF_NEEDED(0, sum_to(where(pick_a, G, zero), A.shape())), IF_NEEDED(1, sum_to(where(pick_a, zero, G), B.shape()))};
}
GF_GRAD(minimum_grad) {
  Tensor pick_a = less_equal(A, B);
  Tensor zero = zeros_like(G);
  return {IF_NEEDED(0, sum_to(where(pick_a, G, zero), A.shape())), IF_NEEDED(1, sum_to(where(pick_a, zero, G), B.shape()))};
}
GF_GRAD(neg_grad) { return {neg(G)}; }
GF_GRAD(exp_grad) { return {mul(G, Y)}; }
GF_GRAD(log_grad) { return {div(G, A)}; }
GF_GRAD(sqrt_grad) { return {div(G, mul(like_scalar(Y, 2), Y))}; }
GF_GRAD(rsqrt_grad) { return {mul(G, mul(like_scalar(Y, -0.5), mul(Y, square(Y))))}; }
GF_GRAD(abs_grad) { return {mul(G, sign(A))}; }
GF_GRAD(square_grad) { return {mul(G, mul(like_scalar(A, 2), A))}; }
GF_GRAD(sign_grad) { return {zeros_like(A)}; }
GF_GRAD(tanh_grad) { return {mul(G, sub(like_scalar(Y, 1), square(Y)))}; }
GF_GRAD(sigmoid_grad) { return {mul(G, mul(Y, sub(like_scalar(Y, 1), Y)))}; }
GF_GRAD(relu_grad) { return {where(greater(A, like_scalar(A, 0)), G, zeros_like(G))}; }
GF_GRAD(softplus_grad) { return {mul(G, sigmoid(A))}; }
GF_GRAD(erf_grad) {
  return {mul(G, mul(like_scalar(A, 1.1283791670955126), exp(neg(square(A)))))};  // 2/sqrt(pi) e^(-x^2)
}
GF_GRAD(gelu_grad) {
  if (c.attrs.get_or<bool>("approximate", false)) {
    constexpr double kC = 0.7978845608028654;  // sqrt(2/pi)
    Tensor x2 = square(A);
    Tensor t = tanh(mul(like_scalar(A, kC), add(A, mul(like_scalar(A, 0.044715), mul(x2, A)))));
    Tensor left = mul(like_scalar(A, 0.5), add(like_scalar(A, 1), t));
    Tensor dt = mul(sub(like_scalar(A, 1), square(t)), add(like_scalar(A, kC), mul(like_scalar(A, 3 * 0.044715 * kC), x2)));
    return {mul(G, add(left, mul(like_scalar(A, 0.5), mul(A, dt))))};
  }
  Tensor cdf = mul(like_scalar(A, 0.5), add(like_scalar(A, 1), erf(mul(A, like_scalar(A, 0.7071067811865476)))));
  Tensor pdf = mul(like_scalar(A, 0.3989422804014327), exp(mul(like_scalar(A, -0.5), square(A))));
  return {mul(G, add(cdf, mul(A, pdf)))};
}
GF_GRAD(where_grad) {
  Tensor zero = zeros_like(G);
  const Tensor& cond = c.inputs[0];
  return {Tensor(), IF_NEEDED(1, sum_to(where(cond, G, zero), c.inputs[1].shape())),
          IF_NEEDED(2, sum_to(where(cond, zero, G), c.inputs[2].shape()))};
}
GF_GRAD(clip_grad) {
  Tensor inside = logical_and(greater_equal(A, like_scalar(A, c.attrs.get<double>("lo"))),
                              less_equal(A, like_scalar(A, c.attrs.get<double>("hi"))));
  return {where(inside, G, zeros_like(G))};
}
#undef A
#undef B
#undef Y
#undef G
#undef IF_NEEDED
#undef GF_GRAD

#define GF_NAME(n) constexpr char k_##n[] = #n;
GF_NAME(add) GF_NAME(sub) GF_NAME(mul) GF_NAME(div) GF_NAME(pow) GF_NAME(maximum) GF_NAME(minimum)
GF_NAME(equal) GF_NAME(not_equal) GF_NAME(less) GF_NAME(less_equal) GF_NAME(greater) GF_NAME(greater_equal)
GF_NAME(logical_and) GF_NAME(logical_or) GF_NAME(logical_not)
GF_NAME(neg) GF_NAME(abs) GF_NAME(square) GF_NAME(sign) GF_NAME(clip)
GF_NAME(exp) GF_NAME(log) GF_NAME(sqrt) GF_NAME(rsqrt) GF_NAME(tanh) GF_NAME(sigmoid) GF_NAME(relu)
GF_NAME(gelu) GF_NAME(softplus) GF_NAME(erf)
#undef GF_NAME

}  // namespace

void register_elementwise_ops(OpRegistry& r) {
  r.define({.name = "add", .infer = infer_arithmetic<k_add>, .grad = add_grad});
  r.define({.name = "sub", .infer = infer_arithmetic<k_sub>, .grad = sub_grad});
  r.define({.name = "mul", .infer = infer_arithmetic<k_mul>, .grad = mul_grad});
  r.define({.name = "div", .infer = infer_arithmetic<k_div>, .grad = div_grad});
  r.define({.name = "pow", .infer = infer_arithmetic<k_pow>, .grad = pow_grad});
  r.define({.name = "maximum", .infer = infer_arithmetic<k_maximum>, .grad = maximum_grad});
  r.define({.name = "minimum", .infer = infer_arithmetic<k_minimum>, .grad = minimum_grad});
  r.define({.name = "equal", .infer = infer_compare<k_equal>});
  r.define({.name = "not_equal", .infer = infer_compare<k_not_equal>});
  r.define({.name = "less", .infer = infer_compare<k_less>});
  r.define({.name = "less_equal", .infer = infer_compare<k_less_equal>});
  r.define({.name = "greater", .infer = infer_compare<k_greater>});
  r.define({.name = "greater_equal", .infer = infer_compare<k_greater_equal>});
  r.define({.name = "logical_and", .infer = infer_logical<k_logical_and>});
  r.define({.name = "logical_or", .infer = infer_logical<k_logical_or>});
  r.define({.name = "logical_not", .infer = infer_logical<k_logical_not>});
  r.define({.name = "neg", .infer = infer_unary_numeric<k_neg>, .grad = neg_grad});
  r.define({.name = "abs", .infer = infer_unary_numeric<k_abs>, .grad = abs_grad});
  r.define({.name = "square", .infer = infer_unary_numeric<k_square>, .grad = square_grad});
  r.define({.name = "sign", .infer = infer_unary_numeric<k_sign>, .grad = sign_grad});
  r.define({.name = "clip", .infer = infer_unary_numeric<k_clip>, .grad = clip_grad});
  r.define({.name = "exp", .infer = infer_unary_float<k_exp>, .grad = exp_grad});
  r.define({.name = "log", .infer = infer_unary_float<k_log>, .grad = log_grad});
  r.define({.name = "sqrt", .infer = infer_unary_float<k_sqrt>, .grad = sqrt_grad});
  r.define({.name = "rsqrt", .infer = infer_unary_float<k_rsqrt>, .grad = rsqrt_grad});
  r.define({.name = "tanh", .infer = infer_unary_float<k_tanh>, .grad = tanh_grad});
  r.define({.name = "sigmoid", .infer = infer_unary_float<k_sigmoid>, .grad = sigmoid_grad});
  r.define({.name = "relu", .infer = infer_unary_numeric<k_relu>, .grad = relu_grad});
  r.define({.name = "gelu", .infer = infer_unary_float<k_gelu>, .grad = gelu_grad});
  r.define({.name = "softplus", .infer = infer_unary_float<k_softplus>, .grad = softplus_grad});
  r.define({.name = "erf", .infer = infer_unary_float<k_erf>, .grad = erf_grad});
  r.define({.name = "where", .infer = infer_where, .grad = where_grad});
}

#define GF_BINARY(fn)                                                 \
  Tensor fn(const Tensor& a, const Tensor& b) {                       \
    static const OpDef& op = op_def(#fn);                             \
    return run_op1(op, {a, b});                                       \
  }
#define GF_UNARY(fn)                                                  \
  Tensor fn(const Tensor& x) {                                        \
    static const OpDef& op = op_def(#fn);                             \
    return run_op1(op, {x});                                          \
  }
GF_BINARY(add) GF_BINARY(sub) GF_BINARY(mul) GF_BINARY(div) GF_BINARY(pow) GF_BINARY(maximum) GF_BINARY(minimum)
GF_BINARY(equal) GF_BINARY(not_equal) GF_BINARY(less) GF_BINARY(less_equal) GF_BINARY(greater)
GF_BINARY(greater_equal) GF_BINARY(logical_and) GF_BINARY(logical_or)
GF_UNARY(logical_not) GF_UNARY(neg) GF_UNARY(abs) GF_UNARY(square) GF_UNARY(sign) GF_UNARY(exp) GF_UNARY(log)
GF_UNARY(sqrt) GF_UNARY(rsqrt) GF_UNARY(tanh) GF_UNARY(sigmoid) GF_UNARY(relu) GF_UNARY(softplus) GF_UNARY(erf)
#undef GF_BINARY
#undef GF_UNARY

Tensor gelu(const Tensor& x, bool approximate) {
  static const OpDef& op = op_def("gelu");
  return run_op1(op, {x}, {{"approximate", approximate}});
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  static const OpDef& op = op_def("where");
  return run_op1(op, {cond, a, b});
}

Tensor clip(const Tensor& x, double lo, double hi) {
  if (lo > hi) throw ValueError(str_cat("clip: lower bound ", lo, " is above upper bound ", hi));
  static const OpDef& op = op_def("clip");
  return run_op1(op, {x}, {{"lo", lo}, {"hi", hi}});
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, double b) { return add(a, like_scalar(a, b)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, like_scalar(a, b)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, like_scalar(a, b)); }
Tensor operator/(const Tensor& a, double b) { return div(a, like_scalar(a, b)); }
Tensor operator+(double a, const Tensor& b) { return add(like_scalar(b, a), b); }
Tensor operator-(double a, const Tensor& b) { return sub(like_scalar(b, a), b); }
Tensor operator*(double a, const Tensor& b) { return mul(like_scalar(b, a), b); }
Tensor operator/(double a, const Tensor& b) { return div(like_scalar(b, a), b); }

}  // namespace gradflow
