// 2-D convolution and pooling, channels last (NHWC) as Keras: x is [batch, height, width, channels],
// a conv kernel is [kernel_h, kernel_w, in_channels, filters]. Padding follows TensorFlow: "valid" uses
// no padding; "same" gives out = ceil(in / stride) and pads (out-1)*stride + (k-1)*dilation + 1 - in
// elements in total, half (rounded down) before and the rest after.
//
// Ops and their gradients (all written with ops, so nested tapes give second derivatives):
//   conv2d(x, kernel)                            -> conv2d_backprop_input, conv2d_backprop_filter
//   conv2d_backprop_input(grad_output, kernel)   -> conv2d, conv2d_backprop_filter   (bilinear)
//   conv2d_backprop_filter(x, grad_output)       -> conv2d_backprop_input, conv2d    (bilinear)
//   max_pool2d(x)                                -> max_pool2d_grad
//   max_pool2d_grad(x, grad_output)              -> max_pool2d_grad_grad (linear in grad_output)
//   max_pool2d_grad_grad(x, grad_grad_input)     -> max_pool2d_grad      (linear in its 2nd input)
//   avg_pool2d(x)                                -> avg_pool2d_grad
//   avg_pool2d_grad(grad_output)                 -> avg_pool2d           (linear)
// The argmax selection of max pooling is piecewise constant in x, so the max-pool grad ops give x no
// gradient. Kernels: cpu/conv_cpu.cc.
#include <string>

#include "core/ops/internal.h"
#include "core/ops/ops.h"

namespace gradflow {
namespace {

using IntList = std::vector<int64_t>;

IntList to_list(const Shape& s) { return IntList(s.begin(), s.end()); }
Shape to_shape(const IntList& v) { return Shape(v.begin(), v.end()); }
std::string padding_name(Padding p) { return p == Padding::kSame ? "same" : "valid"; }

// A pair of positive ints (strides, dilation, pool_size) from an attr, or ValueError naming the op.
IntList positive_pair(std::string_view op, const Attrs& a, std::string_view key) {
  const IntList& v = a.get<IntList>(key);
  if (v.size() != 2 || v[0] <= 0 || v[1] <= 0) {
    throw ValueError(str_cat(op, ": ", key, " ", shape_str(v), " must be two positive integers"));
  }
  return v;
}

bool is_same_padding(std::string_view op, const Attrs& a) {
  const std::string& p = a.get<std::string>("padding");
  if (p != "valid" && p != "same") throw ValueError(str_cat(op, ": padding '", p, "' is not 'valid' or 'same'"));
  return p == "same";
}

void check_rank4(std::string_view op, std::string_view what, absl::Span<const int64_t> s, std::string_view legend) {
  if (s.size() != 4) {
    throw ShapeError(str_cat(op, ": ", what, " ", shape_str(s), " must have rank 4 ", legend));
  }
}

// Output length along one spatial axis (1: height, 2: width), or ShapeError when it would be empty.
// `window` names the window's shape in the message ("kernel [3,3,1,32]", "pool_size [2,2]").
int64_t out_size(std::string_view op, absl::Span<const int64_t> x, std::string_view window, int axis, int64_t k,
                 int64_t stride, int64_t dilation, bool same) {
  int64_t in = x[axis];
  int64_t effective = (k - 1) * dilation + 1;
  int64_t out = same ? (in + stride - 1) / stride : (in >= effective ? (in - effective) / stride + 1 : 0);
  if (out <= 0) {
    throw ShapeError(str_cat(op, ": input ", shape_str(x), " has ", axis == 1 ? "height " : "width ", in,
                             ", less than the ", effective, " covered by ", window, " with dilation ", dilation,
                             " and padding '", same ? "same" : "valid", "'"));
  }
  return out;
}

// ---- Convolution ----

struct ConvParams {
  IntList strides, dilation;
  bool same;
};

ConvParams conv_params(std::string_view op, const Attrs& a) {
  return {positive_pair(op, a, "strides"), positive_pair(op, a, "dilation"), is_same_padding(op, a)};
}

// [batch, out_h, out_w, filters] of conv2d(x, kernel), validating ranks and channels.
Shape conv_output_shape(std::string_view op, absl::Span<const int64_t> x, absl::Span<const int64_t> k,
                        const ConvParams& p) {
  check_rank4(op, "input", x, "[batch, height, width, channels]");
  check_rank4(op, "kernel", k, "[kernel_h, kernel_w, in_channels, filters]");
  if (x[3] != k[2]) {
    throw ShapeError(str_cat(op, ": input ", shape_str(x), " has ", x[3], " channels but kernel ", shape_str(k),
                             " expects ", k[2]));
  }
  std::string window = str_cat("kernel ", shape_str(k));
  return {x[0], out_size(op, x, window, 1, k[0], p.strides[0], p.dilation[0], p.same),
          out_size(op, x, window, 2, k[1], p.strides[1], p.dilation[1], p.same), k[3]};
}

void check_conv_dtypes(std::string_view op, const Tensor& a, const Tensor& b) {
  check_same_dtype(op, a, b);
  check_float(op, a);
}

MetaList infer_conv2d(const TensorList& in, const Attrs& a) {
  check_conv_dtypes("conv2d", in[0], in[1]);
  return {TensorMeta{conv_output_shape("conv2d", in[0].shape(), in[1].shape(), conv_params("conv2d", a)),
                     in[0].dtype()}};
}

// grad_output must be exactly what conv2d(input, kernel) produced.
void check_grad_output(std::string_view op, const Tensor& g, const Shape& expected, absl::Span<const int64_t> x,
                       absl::Span<const int64_t> k) {
  if (g.shape() != expected) {
    throw ShapeError(str_cat(op, ": grad_output ", shape_str(g.shape()), " differs from the output ",
                             shape_str(expected), " of input ", shape_str(x), " and window ", shape_str(k)));
  }
}

MetaList infer_conv2d_backprop_input(const TensorList& in, const Attrs& a) {
  constexpr std::string_view kOp = "conv2d_backprop_input";
  const Tensor& g = in[0];
  const Tensor& kernel = in[1];
  check_conv_dtypes(kOp, g, kernel);
  const IntList& x = a.get<IntList>("input_shape");
  check_grad_output(kOp, g, conv_output_shape(kOp, x, kernel.shape(), conv_params(kOp, a)), x, kernel.shape());
  return {TensorMeta{to_shape(x), g.dtype()}};
}

MetaList infer_conv2d_backprop_filter(const TensorList& in, const Attrs& a) {
  constexpr std::string_view kOp = "conv2d_backprop_filter";
  const Tensor& x = in[0];
  const Tensor& g = in[1];
  check_conv_dtypes(kOp, x, g);
  const IntList& k = a.get<IntList>("filter_shape");
  check_grad_output(kOp, g, conv_output_shape(kOp, x.shape(), k, conv_params(kOp, a)), x.shape(), k);
  return {TensorMeta{to_shape(k), x.dtype()}};
}

// The conv attrs of `from` (strides, padding, dilation) plus one shape attr.
Attrs conv_attrs(const Attrs& from, std::string_view shape_key, const Shape& shape) {
  Attrs a{{"strides", from.get<IntList>("strides")},
          {"padding", from.get<std::string>("padding")},
          {"dilation", from.get<IntList>("dilation")}};
  a.set(shape_key, to_list(shape));
  return a;
}

Tensor conv2d_backprop_input(const Tensor& g, const Tensor& kernel, const Shape& input_shape, const Attrs& from) {
  static const OpDef& op = op_def("conv2d_backprop_input");
  return run_op1(op, {g, kernel}, conv_attrs(from, "input_shape", input_shape));
}

Tensor conv2d_backprop_filter(const Tensor& x, const Tensor& g, const Shape& filter_shape, const Attrs& from) {
  static const OpDef& op = op_def("conv2d_backprop_filter");
  return run_op1(op, {x, g}, conv_attrs(from, "filter_shape", filter_shape));
}

Tensor conv2d_with(const Tensor& x, const Tensor& kernel, const Attrs& from) {
  static const OpDef& op = op_def("conv2d");
  return run_op1(op, {x, kernel},
                 {{"strides", from.get<IntList>("strides")},
                  {"padding", from.get<std::string>("padding")},
                  {"dilation", from.get<IntList>("dilation")}});
}

TensorList conv2d_grad(const GradContext& c) {
  const Tensor& x = c.inputs[0];
  const Tensor& kernel = c.inputs[1];
  const Tensor& g = c.grad_outputs[0];
  // The first layer's input is data: its gradient, as costly as the kernel's, is skipped.
  return {c.needs(0) ? conv2d_backprop_input(g, kernel, x.shape(), c.attrs) : Tensor(),
          c.needs(1) ? conv2d_backprop_filter(x, g, kernel.shape(), c.attrs) : Tensor()};
}

// dx = B(g, kernel) is bilinear, with <gg, B(g, kernel)> = <conv2d(gg, kernel), g>
//                                                      = <kernel, backprop_filter(gg, g)>.
TensorList conv2d_backprop_input_grad(const GradContext& c) {
  const Tensor& g = c.inputs[0];
  const Tensor& kernel = c.inputs[1];
  const Tensor& gg = c.grad_outputs[0];
  return {c.needs(0) ? conv2d_with(gg, kernel, c.attrs) : Tensor(),
          c.needs(1) ? conv2d_backprop_filter(gg, g, kernel.shape(), c.attrs) : Tensor()};
}

// dk = F(x, g) is bilinear, with <gg, F(x, g)> = <conv2d(x, gg), g> = <x, backprop_input(g, gg)>.
TensorList conv2d_backprop_filter_grad(const GradContext& c) {
  const Tensor& x = c.inputs[0];
  const Tensor& g = c.inputs[1];
  const Tensor& gg = c.grad_outputs[0];
  return {c.needs(0) ? conv2d_backprop_input(g, gg, x.shape(), c.attrs) : Tensor(),
          c.needs(1) ? conv2d_with(x, gg, c.attrs) : Tensor()};
}

// ---- Pooling ----

// [batch, out_h, out_w, channels] of pooling x, validating rank and attrs.
Shape pool_output_shape(std::string_view op, absl::Span<const int64_t> x, const Attrs& a) {
  IntList pool = positive_pair(op, a, "pool_size");
  IntList strides = positive_pair(op, a, "strides");
  bool same = is_same_padding(op, a);
  check_rank4(op, "input", x, "[batch, height, width, channels]");
  std::string window = str_cat("pool_size ", shape_str(pool));
  return {x[0], out_size(op, x, window, 1, pool[0], strides[0], 1, same),
          out_size(op, x, window, 2, pool[1], strides[1], 1, same), x[3]};
}

MetaList infer_pool(std::string_view op, const TensorList& in, const Attrs& a) {
  check_float(op, in[0]);
  return {TensorMeta{pool_output_shape(op, in[0].shape(), a), in[0].dtype()}};
}
MetaList infer_max_pool2d(const TensorList& in, const Attrs& a) { return infer_pool("max_pool2d", in, a); }
MetaList infer_avg_pool2d(const TensorList& in, const Attrs& a) { return infer_pool("avg_pool2d", in, a); }

// max_pool2d_grad(x, grad_output) -> like x; max_pool2d_grad_grad(x, grad_grad_input) -> like the output.
MetaList infer_max_pool_grad(const TensorList& in, const Attrs& a, std::string_view op, bool to_input) {
  const Tensor& x = in[0];
  const Tensor& g = in[1];
  check_conv_dtypes(op, x, g);
  Shape out = pool_output_shape(op, x.shape(), a);
  const Shape& expected = to_input ? out : x.shape();
  if (g.shape() != expected) {
    throw ShapeError(str_cat(op, ": gradient ", shape_str(g.shape()), " must be ", shape_str(expected),
                             " for input ", shape_str(x.shape()), " pooled to ", shape_str(out)));
  }
  return {TensorMeta{to_input ? x.shape() : out, x.dtype()}};
}

MetaList infer_max_pool2d_grad(const TensorList& in, const Attrs& a) {
  return infer_max_pool_grad(in, a, "max_pool2d_grad", true);
}
MetaList infer_max_pool2d_grad_grad(const TensorList& in, const Attrs& a) {
  return infer_max_pool_grad(in, a, "max_pool2d_grad_grad", false);
}

MetaList infer_avg_pool2d_grad(const TensorList& in, const Attrs& a) {
  constexpr std::string_view kOp = "avg_pool2d_grad";
  const Tensor& g = in[0];
  check_float(kOp, g);
  const IntList& x = a.get<IntList>("input_shape");
  Shape out = pool_output_shape(kOp, x, a);
  if (g.shape() != out) {
    throw ShapeError(str_cat(kOp, ": grad_output ", shape_str(g.shape()), " differs from the output ",
                             shape_str(out), " of pooling input ", shape_str(x)));
  }
  return {TensorMeta{to_shape(x), g.dtype()}};
}

// The pool attrs of `from` (pool_size, strides, padding).
Attrs pool_attrs(const Attrs& from) {
  return {{"pool_size", from.get<IntList>("pool_size")},
          {"strides", from.get<IntList>("strides")},
          {"padding", from.get<std::string>("padding")}};
}

Tensor run_pool_op(std::string_view name, const TensorList& inputs, const Attrs& from) {
  return run_op1(op_def(name), inputs, pool_attrs(from));
}

TensorList max_pool2d_grad(const GradContext& c) {
  return {run_pool_op("max_pool2d_grad", {c.inputs[0], c.grad_outputs[0]}, c.attrs)};
}
TensorList max_pool2d_grad_grad(const GradContext& c) {
  return {Tensor(), run_pool_op("max_pool2d_grad_grad", {c.inputs[0], c.grad_outputs[0]}, c.attrs)};
}
TensorList max_pool2d_grad_grad_grad(const GradContext& c) {
  return {Tensor(), run_pool_op("max_pool2d_grad", {c.inputs[0], c.grad_outputs[0]}, c.attrs)};
}

TensorList avg_pool2d_grad(const GradContext& c) {
  Attrs a = pool_attrs(c.attrs);
  a.set("input_shape", to_list(c.inputs[0].shape()));
  static const OpDef& op = op_def("avg_pool2d_grad");
  return {run_op1(op, {c.grad_outputs[0]}, a)};
}
TensorList avg_pool2d_grad_grad(const GradContext& c) {
  return {run_pool_op("avg_pool2d", {c.grad_outputs[0]}, c.attrs)};
}

Attrs pool_options_attrs(const Pool2DOptions& o) {
  return {{"pool_size", IntList{o.pool_size[0], o.pool_size[1]}},
          {"strides", IntList{o.strides[0], o.strides[1]}},
          {"padding", padding_name(o.padding)}};
}

}  // namespace

void register_conv_ops(OpRegistry& r) {
  r.define({.name = "conv2d", .infer = infer_conv2d, .grad = conv2d_grad});
  r.define({.name = "conv2d_backprop_input", .infer = infer_conv2d_backprop_input, .grad = conv2d_backprop_input_grad});
  r.define(
      {.name = "conv2d_backprop_filter", .infer = infer_conv2d_backprop_filter, .grad = conv2d_backprop_filter_grad});
  r.define({.name = "max_pool2d", .infer = infer_max_pool2d, .grad = max_pool2d_grad});
  r.define({.name = "max_pool2d_grad", .infer = infer_max_pool2d_grad, .grad = max_pool2d_grad_grad});
  r.define({.name = "max_pool2d_grad_grad", .infer = infer_max_pool2d_grad_grad, .grad = max_pool2d_grad_grad_grad});
  r.define({.name = "avg_pool2d", .infer = infer_avg_pool2d, .grad = avg_pool2d_grad});
  r.define({.name = "avg_pool2d_grad", .infer = infer_avg_pool2d_grad, .grad = avg_pool2d_grad_grad});
}

Tensor conv2d(const Tensor& x, const Tensor& kernel, const Conv2DOptions& options) {
  static const OpDef& op = op_def("conv2d");
  return run_op1(op, {x, kernel},
                 {{"strides", IntList{options.strides[0], options.strides[1]}},
                  {"padding", padding_name(options.padding)},
                  {"dilation", IntList{options.dilation[0], options.dilation[1]}}});
}

Tensor max_pool2d(const Tensor& x, const Pool2DOptions& options) {
  static const OpDef& op = op_def("max_pool2d");
  return run_op1(op, {x}, pool_options_attrs(options));
}

Tensor avg_pool2d(const Tensor& x, const Pool2DOptions& options) {
  static const OpDef& op = op_def("avg_pool2d");
  return run_op1(op, {x}, pool_options_attrs(options));
}

}  // namespace gradflow
