// conv2d, max_pool2d and avg_pool2d (NHWC): forward values against a naive reference written here and
// hand-computed cases; first and second derivatives against central finite differences in float64;
// shape, attribute and dtype errors.
#include <cmath>
#include <string>
#include <vector>

#include "tests/core/grad_check.h"

namespace gradflow {
namespace {

using testing::expect_gradients_match;

// ---- Naive references (independent of the library's geometry code) ----

// TensorFlow's rule: "same" gives ceil(in / stride) and pads half the total before, the rest after.
int64_t ref_out_size(int64_t in, int64_t k, int64_t stride, int64_t dilation, bool same) {
  int64_t effective = (k - 1) * dilation + 1;
  return same ? (in + stride - 1) / stride : (in - effective) / stride + 1;
}
int64_t ref_pad_before(int64_t in, int64_t k, int64_t stride, int64_t dilation, bool same) {
  if (!same) return 0;
  int64_t out = ref_out_size(in, k, stride, dilation, true);
  return std::max<int64_t>((out - 1) * stride + (k - 1) * dilation + 1 - in, 0) / 2;
}

// The seven-loop convolution of x [n, h, w, c] with k [kh, kw, c, f].
std::vector<double> ref_conv2d(const Tensor& xt, const Tensor& kt, const Conv2DOptions& o, Shape* out_shape) {
  std::vector<double> x = xt.to_vector<double>(), k = kt.to_vector<double>();
  int64_t n = xt.dim(0), h = xt.dim(1), w = xt.dim(2), c = xt.dim(3);
  int64_t kh = kt.dim(0), kw = kt.dim(1), f = kt.dim(3);
  bool same = o.padding == Padding::kSame;
  int64_t oh = ref_out_size(h, kh, o.strides[0], o.dilation[0], same);
  int64_t ow = ref_out_size(w, kw, o.strides[1], o.dilation[1], same);
  int64_t pt = ref_pad_before(h, kh, o.strides[0], o.dilation[0], same);
  int64_t pl = ref_pad_before(w, kw, o.strides[1], o.dilation[1], same);
  *out_shape = {n, oh, ow, f};
  std::vector<double> out(n * oh * ow * f, 0.0);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t r = 0; r < oh; ++r)
      for (int64_t q = 0; q < ow; ++q)
        for (int64_t fi = 0; fi < f; ++fi)
          for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j)
              for (int64_t ci = 0; ci < c; ++ci) {
                int64_t y = r * o.strides[0] - pt + i * o.dilation[0];
                int64_t xx = q * o.strides[1] - pl + j * o.dilation[1];
                if (y < 0 || y >= h || xx < 0 || xx >= w) continue;
                out[((b * oh + r) * ow + q) * f + fi] +=
                    x[((b * h + y) * w + xx) * c + ci] * k[((i * kw + j) * c + ci) * f + fi];
              }
  return out;
}

// Max or average (over in-image elements) pooling of x [n, h, w, c].
std::vector<double> ref_pool2d(const Tensor& xt, const Pool2DOptions& o, bool is_max, Shape* out_shape) {
  std::vector<double> x = xt.to_vector<double>();
  int64_t n = xt.dim(0), h = xt.dim(1), w = xt.dim(2), c = xt.dim(3);
  bool same = o.padding == Padding::kSame;
  int64_t oh = ref_out_size(h, o.pool_size[0], o.strides[0], 1, same);
  int64_t ow = ref_out_size(w, o.pool_size[1], o.strides[1], 1, same);
  int64_t pt = ref_pad_before(h, o.pool_size[0], o.strides[0], 1, same);
  int64_t pl = ref_pad_before(w, o.pool_size[1], o.strides[1], 1, same);
  *out_shape = {n, oh, ow, c};
  std::vector<double> out;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t r = 0; r < oh; ++r)
      for (int64_t q = 0; q < ow; ++q)
        for (int64_t ci = 0; ci < c; ++ci) {
          double acc = is_max ? -INFINITY : 0.0;
          int count = 0;
          for (int64_t i = 0; i < o.pool_size[0]; ++i)
            for (int64_t j = 0; j < o.pool_size[1]; ++j) {
              int64_t y = r * o.strides[0] - pt + i, xx = q * o.strides[1] - pl + j;
              if (y < 0 || y >= h || xx < 0 || xx >= w) continue;
              double v = x[((b * h + y) * w + xx) * c + ci];
              acc = is_max ? std::max(acc, v) : acc + v;
              ++count;
            }
          out.push_back(is_max ? acc : acc / count);
        }
  return out;
}

void expect_values_near(const Tensor& got, const Shape& shape, const std::vector<double>& want, double rtol) {
  ASSERT_EQ(got.shape(), shape);
  std::vector<double> g = got.to_vector<double>();
  ASSERT_EQ(g.size(), want.size());
  for (size_t i = 0; i < g.size(); ++i) {
    EXPECT_NEAR(g[i], want[i], rtol * (1 + std::abs(want[i]))) << "element " << i << " of " << shape_str(shape);
  }
}

Tensor normal_f64(Shape shape, uint64_t seed, double stddev = 1) {
  return random_normal(std::move(shape), 0, stddev, kF64, kCPU, seed);
}
Tensor iota(double stop, Shape shape) { return arange(1, stop + 1, 1, kF64).reshape(std::move(shape)); }

struct ConvCase {
  std::string name;
  Shape x, k;
  Conv2DOptions options;
};

const Conv2DOptions kSame{.padding = Padding::kSame};
const std::vector<ConvCase> kConvCases = {
    {"valid_s1", {2, 5, 7, 3}, {3, 3, 3, 4}, {}},
    {"same_s1", {2, 5, 7, 3}, {3, 3, 3, 4}, kSame},
    {"valid_s2", {2, 7, 6, 2}, {3, 2, 2, 3}, {.strides = {2, 2}}},
    {"same_s2_odd", {3, 7, 9, 2}, {3, 3, 2, 3}, {.strides = {2, 2}, .padding = Padding::kSame}},
    {"valid_dilation2", {1, 9, 8, 2}, {3, 3, 2, 2}, {.dilation = {2, 2}}},
    {"same_dilation2", {2, 9, 8, 2}, {3, 3, 2, 2}, {.padding = Padding::kSame, .dilation = {2, 2}}},
    {"same_mixed", {2, 6, 7, 2}, {2, 3, 2, 2}, {.strides = {1, 2}, .padding = Padding::kSame, .dilation = {2, 1}}},
    {"same_even_kernel", {2, 6, 5, 1}, {4, 2, 1, 2}, kSame},
    {"same_kernel_larger_than_input", {1, 2, 3, 1}, {5, 5, 1, 2}, kSame},
    {"pointwise_s1", {3, 4, 5, 6}, {1, 1, 6, 2}, {}},
    {"pointwise_s2", {3, 5, 5, 6}, {1, 1, 6, 2}, {.strides = {2, 2}}},
    {"pointwise_same_s2", {2, 5, 4, 3}, {1, 1, 3, 2}, {.strides = {2, 2}, .padding = Padding::kSame}},
    {"stride3_valid", {2, 10, 8, 2}, {2, 2, 2, 3}, {.strides = {3, 3}}},
};

// ---- Convolution forward ----

TEST(Conv2D, MatchesNaiveReference) {
  uint64_t seed = 10;
  for (const ConvCase& c : kConvCases) {
    SCOPED_TRACE(c.name);
    Tensor x = normal_f64(c.x, seed++), k = normal_f64(c.k, seed++);
    Shape shape;
    std::vector<double> want = ref_conv2d(x, k, c.options, &shape);
    expect_values_near(conv2d(x, k, c.options), shape, want, 1e-12);
    expect_values_near(conv2d(x.to(kF32), k.to(kF32), c.options), shape, want, 1e-5);
  }
}

TEST(Conv2D, HandComputed) {
  // 3x3 image 1..9, 2x2 ones kernel, valid: sums of each 2x2 block.
  Tensor x = iota(9, {1, 3, 3, 1});
  EXPECT_EQ(conv2d(x, ones({2, 2, 1, 1}, kF64)).to_vector<double>(), (std::vector<double>{12, 16, 24, 28}));
  // 3x3 ones kernel, same: one pixel of zero padding on every side.
  EXPECT_EQ(conv2d(x, ones({3, 3, 1, 1}, kF64), kSame).to_vector<double>(),
            (std::vector<double>{12, 21, 16, 27, 45, 33, 24, 39, 28}));
  // 4x4 image, 2x2 kernel, same: the single padding row/column goes after (bottom/right).
  Tensor y = conv2d(iota(16, {1, 4, 4, 1}), ones({2, 2, 1, 1}, kF64), kSame);
  ASSERT_EQ(y.shape(), (Shape{1, 4, 4, 1}));
  std::vector<double> v = y.to_vector<double>();
  EXPECT_EQ(v[0], 1 + 2 + 5 + 6);
  EXPECT_EQ(v[3], 4 + 8);
  EXPECT_EQ(v[12], 13 + 14);
  EXPECT_EQ(v[15], 16);
  // Channels mix through the kernel's [in_channels, filters] matrix.
  Tensor k = from_vector<double>({1, 2, 3, 4, 5, 6}, {1, 1, 2, 3});
  EXPECT_EQ(conv2d(from_vector<double>({1, 2}, {1, 1, 1, 2}), k).to_vector<double>(),
            (std::vector<double>{9, 12, 15}));
  // Stride 2 with dilation 2 on a 5x5 image picks pixels (0,0),(0,2),(2,0),(2,2) for a 2x2 kernel.
  Tensor d = conv2d(iota(25, {1, 5, 5, 1}), ones({2, 2, 1, 1}, kF64), {.strides = {2, 2}, .dilation = {2, 2}});
  EXPECT_EQ(d.shape(), (Shape{1, 2, 2, 1}));
  EXPECT_EQ(d.to_vector<double>()[0], 1 + 3 + 11 + 13);
}

TEST(Conv2D, HalfPrecisionRunsThroughF32) {
  Tensor x = normal_f64({2, 5, 5, 2}, 1), k = normal_f64({3, 3, 2, 2}, 2);
  Shape shape;
  std::vector<double> want = ref_conv2d(x.to(kF16).to(kF64), k.to(kF16).to(kF64), kSame, &shape);
  Tensor y = conv2d(x.to(kF16), k.to(kF16), kSame);
  EXPECT_EQ(y.dtype(), kF16);
  expect_values_near(y, shape, want, 1e-2);
}

TEST(Conv2D, NonContiguousAndEmptyInputs) {
  // An NCHW tensor permuted to NHWC is a strided view; the result matches its contiguous copy.
  Tensor nchw = normal_f64({2, 3, 5, 6}, 7), k = normal_f64({3, 3, 3, 2}, 8);
  Tensor view = nchw.permute({0, 2, 3, 1});
  ASSERT_FALSE(view.is_contiguous());
  Shape shape;
  std::vector<double> want = ref_conv2d(view, k, kSame, &shape);
  expect_values_near(conv2d(view, k, kSame), shape, want, 1e-12);
  expect_values_near(max_pool2d(view), {2, 2, 3, 3}, max_pool2d(view.contiguous()).to_vector<double>(), 0);
  // An empty batch gives an empty output and a zero kernel gradient; zero input channels give zeros.
  Tensor empty_batch = zeros({0, 5, 5, 3}, kF64);
  GradientTape tape;
  tape.watch(k);
  Tensor y = conv2d(empty_batch, k);
  EXPECT_EQ(y.shape(), (Shape{0, 3, 3, 2}));
  Tensor dk = tape.gradient(sum(y), {k})[0];
  EXPECT_EQ(dk.to_vector<double>(), std::vector<double>(k.numel(), 0.0));
  EXPECT_EQ(conv2d(zeros({1, 4, 4, 0}, kF64), zeros({3, 3, 0, 2}, kF64)).to_vector<double>(),
            std::vector<double>(8, 0.0));
}

// Several im2col chunks (over 2^23 elements in all) and OpenMP: checked with the reference and with the
// adjoint identities <conv(x, k), g> = <x, dx> = <k, dk>, where dx, dk are the gradients of <conv, g>.
TEST(Conv2D, LargeBatchAcrossChunks) {
  Tensor x = normal_f64({6, 64, 64, 16}, 3), k = normal_f64({5, 5, 16, 4}, 4);
  Conv2DOptions o{.padding = Padding::kSame};
  Shape shape;
  std::vector<double> want = ref_conv2d(x, k, o, &shape);
  Tensor y = conv2d(x, k, o);
  expect_values_near(y, shape, want, 1e-10);
  Tensor g = normal_f64(shape, 5);
  GradientTape tape;
  tape.watch(x);
  tape.watch(k);
  Tensor inner = sum(mul(conv2d(x, k, o), g));
  std::vector<Tensor> grads = tape.gradient(inner, {x, k});
  double reference = inner.item();
  EXPECT_NEAR(sum(mul(x, grads[0])).item(), reference, 1e-9 * std::abs(reference));
  EXPECT_NEAR(sum(mul(k, grads[1])).item(), reference, 1e-9 * std::abs(reference));
}

// ---- Pooling forward ----

TEST(Pool2D, HandComputed) {
  Tensor x = iota(16, {1, 4, 4, 1});
  EXPECT_EQ(max_pool2d(x).to_vector<double>(), (std::vector<double>{6, 8, 14, 16}));
  EXPECT_EQ(avg_pool2d(x).to_vector<double>(), (std::vector<double>{3.5, 5.5, 11.5, 13.5}));
  // 3x3 with 2x2 windows, stride 2, same: one padding row/column after; averages count in-image pixels.
  Tensor x3 = iota(9, {1, 3, 3, 1});
  Pool2DOptions same{.padding = Padding::kSame};
  EXPECT_EQ(max_pool2d(x3, same).to_vector<double>(), (std::vector<double>{5, 6, 8, 9}));
  EXPECT_EQ(avg_pool2d(x3, same).to_vector<double>(), (std::vector<double>{3, 4.5, 7.5, 9}));
  // 3x3 windows, stride 1, same: corners average 4 pixels, the centre 9.
  Pool2DOptions s1{.pool_size = {3, 3}, .strides = {1, 1}, .padding = Padding::kSame};
  std::vector<double> avg = avg_pool2d(x3, s1).to_vector<double>();
  EXPECT_DOUBLE_EQ(avg[0], (1 + 2 + 4 + 5) / 4.0);
  EXPECT_DOUBLE_EQ(avg[4], 5);
  // Padding never wins a max, even when every value is negative.
  EXPECT_EQ(max_pool2d(neg(x3), s1).to_vector<double>()[0], -1);
}

TEST(Pool2D, MatchesNaiveReference) {
  const std::vector<std::pair<Shape, Pool2DOptions>> cases = {
      {{2, 6, 7, 3}, {}},
      {{2, 7, 7, 3}, {.padding = Padding::kSame}},
      {{2, 7, 8, 2}, {.pool_size = {3, 3}, .strides = {2, 2}}},
      {{2, 7, 8, 2}, {.pool_size = {3, 3}, .strides = {2, 2}, .padding = Padding::kSame}},
      {{1, 5, 6, 2}, {.pool_size = {3, 2}, .strides = {1, 3}, .padding = Padding::kSame}},
      {{3, 5, 5, 1}, {.pool_size = {1, 1}, .strides = {2, 2}}},
      {{4, 40, 40, 8}, {.pool_size = {3, 3}, .strides = {2, 2}, .padding = Padding::kSame}},  // OpenMP
  };
  uint64_t seed = 50;
  for (const auto& [xs, o] : cases) {
    SCOPED_TRACE(shape_str(xs));
    Tensor x = normal_f64(xs, seed++);
    Shape shape;
    std::vector<double> want_max = ref_pool2d(x, o, true, &shape);
    expect_values_near(max_pool2d(x, o), shape, want_max, 0);
    std::vector<double> want_avg = ref_pool2d(x, o, false, &shape);
    expect_values_near(avg_pool2d(x, o), shape, want_avg, 1e-12);
    expect_values_near(avg_pool2d(x.to(kF32), o), shape, want_avg, 1e-5);
  }
}

// ---- First derivatives against finite differences ----

TEST(Conv2DGrad, MatchesFiniteDifferences) {
  uint64_t seed = 100;
  for (const ConvCase& c : kConvCases) {
    SCOPED_TRACE(c.name);
    Conv2DOptions o = c.options;
    expect_gradients_match([o](const auto& in) { return conv2d(in[0], in[1], o); },
                           {normal_f64(c.x, seed), normal_f64(c.k, seed + 1)});
    seed += 2;
  }
}

const std::vector<Pool2DOptions> kPoolGradOptions = {
    {},
    {.padding = Padding::kSame},
    {.pool_size = {3, 3}, .strides = {2, 2}, .padding = Padding::kSame},
    {.pool_size = {3, 2}, .strides = {1, 1}},
};

TEST(Pool2DGrad, MaxMatchesFiniteDifferences) {
  uint64_t seed = 200;
  for (const Pool2DOptions& o : kPoolGradOptions) {
    expect_gradients_match([o](const auto& in) { return max_pool2d(in[0], o); }, {normal_f64({2, 5, 6, 2}, seed++)});
  }
}

TEST(Pool2DGrad, AvgMatchesFiniteDifferences) {
  uint64_t seed = 300;
  for (const Pool2DOptions& o : kPoolGradOptions) {
    expect_gradients_match([o](const auto& in) { return avg_pool2d(in[0], o); }, {normal_f64({2, 5, 6, 2}, seed++)});
  }
}

// ---- Second derivatives through nested tapes ----

// sum(grad^2) where grad is the inner tape's gradient of `loss(inputs)` wrt input `which`; its own
// gradient (taken by the checker's outer tape) is a second derivative.
testing::Fn grad_norm(std::function<Tensor(const std::vector<Tensor>&)> loss, size_t which) {
  return [loss, which](const std::vector<Tensor>& in) {
    GradientTape inner;
    for (const Tensor& t : in) inner.watch(t);
    std::vector<GradSource> sources(in.begin(), in.end());
    std::vector<Tensor> g = inner.gradient(loss(in), sources);
    return sum(square(g[which]));
  };
}

TEST(Conv2DGrad, SecondDerivativesMatchFiniteDifferences) {
  const std::vector<ConvCase> cases = {
      {"valid_s1", {2, 4, 5, 2}, {3, 2, 2, 2}, {}},
      {"same_s2_dilation", {1, 6, 5, 2}, {2, 3, 2, 2}, {.strides = {2, 1}, .padding = Padding::kSame, .dilation = {1, 2}}},
      {"pointwise", {2, 3, 3, 2}, {1, 1, 2, 3}, {}},
  };
  // Inputs of stddev 0.5 keep sum(grad^2) near 1-100, so that eps = 1e-6 differences are not swamped
  // by rounding (about 1e-16 * |value| / eps).
  uint64_t seed = 400;
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(c.name);
    Conv2DOptions o = c.options;
    Tensor x = normal_f64(c.x, seed++, 0.5), k = normal_f64(c.k, seed++, 0.5);
    Tensor w = normal_f64(conv2d(x, k, o).shape(), seed++, 0.5);
    // Linear loss: grad_x = conv2d_backprop_input(w, k) depends on k only.
    auto linear = [o, w](const std::vector<Tensor>& in) { return sum(mul(conv2d(in[0], in[1], o), w)); };
    expect_gradients_match(grad_norm(linear, 0), {x, k});
    expect_gradients_match(grad_norm(linear, 1), {x, k});
    // Quadratic loss: both gradients depend on both inputs, through every backprop op's gradient.
    auto quadratic = [o, w](const std::vector<Tensor>& in) { return sum(mul(square(conv2d(in[0], in[1], o)), w)); };
    expect_gradients_match(grad_norm(quadratic, 0), {x, k});
    expect_gradients_match(grad_norm(quadratic, 1), {x, k});
  }
}

TEST(Pool2DGrad, SecondDerivativesMatchFiniteDifferences) {
  uint64_t seed = 500;
  for (const Pool2DOptions& o : kPoolGradOptions) {
    Tensor x = normal_f64({2, 5, 6, 2}, seed++, 0.5);
    Tensor w = normal_f64(max_pool2d(x, o).shape(), seed++, 0.5);
    auto max_loss = [o, w](const std::vector<Tensor>& in) { return sum(mul(square(max_pool2d(in[0], o)), w)); };
    auto avg_loss = [o, w](const std::vector<Tensor>& in) { return sum(mul(square(avg_pool2d(in[0], o)), w)); };
    expect_gradients_match(grad_norm(max_loss, 0), {x});
    expect_gradients_match(grad_norm(avg_loss, 0), {x});
  }
}

// ---- Errors ----

template <typename E, typename F>
void expect_error(F f, const std::vector<std::string>& fragments) {
  try {
    f();
    ADD_FAILURE() << "no exception";
  } catch (const E& e) {
    for (const std::string& s : fragments) EXPECT_NE(std::string(e.what()).find(s), std::string::npos) << e.what();
  }
}

TEST(ConvErrors, ShapesAndAttributes) {
  Tensor x = zeros({8, 28, 28, 3});
  expect_error<ShapeError>([&] { conv2d(x, zeros({3, 3, 1, 32})); },
                           {"conv2d: input [8,28,28,3] has 3 channels but kernel [3,3,1,32] expects 1"});
  expect_error<ShapeError>([&] { conv2d(zeros({28, 28, 3}), zeros({3, 3, 3, 32})); }, {"conv2d", "[28,28,3]", "rank 4"});
  expect_error<ShapeError>([&] { conv2d(x, zeros({3, 3, 32})); }, {"conv2d", "kernel [3,3,32]", "rank 4"});
  expect_error<ValueError>([&] { conv2d(x, zeros({3, 3, 3, 4}), {.strides = {0, 1}}); }, {"conv2d", "strides [0,1]"});
  expect_error<ValueError>([&] { conv2d(x, zeros({3, 3, 3, 4}), {.dilation = {1, -2}}); },
                           {"conv2d", "dilation [1,-2]"});
  expect_error<ShapeError>([&] { conv2d(zeros({1, 2, 2, 1}), zeros({3, 3, 1, 1})); },
                           {"conv2d", "[1,2,2,1]", "kernel [3,3,1,1]", "valid"});
  expect_error<ShapeError>([&] { conv2d(zeros({1, 5, 5, 1}), zeros({3, 3, 1, 1}), {.dilation = {3, 3}}); },
                           {"conv2d", "[1,5,5,1]", "dilation 3"});
  expect_error<DTypeError>([&] { conv2d(x, zeros({3, 3, 3, 4}, kF64)); }, {"conv2d"});
  expect_error<DTypeError>([&] { conv2d(zeros({1, 3, 3, 1}, kI32), zeros({1, 1, 1, 1}, kI32)); }, {"conv2d"});
}

TEST(PoolErrors, ShapesAndAttributes) {
  for (bool is_max : {true, false}) {
    std::string op = is_max ? "max_pool2d" : "avg_pool2d";
    auto pool = [is_max](const Tensor& t, const Pool2DOptions& o) { return is_max ? max_pool2d(t, o) : avg_pool2d(t, o); };
    expect_error<ShapeError>([&] { pool(zeros({4, 4, 3}), {}); }, {op, "[4,4,3]", "rank 4"});
    expect_error<ValueError>([&] { pool(zeros({1, 4, 4, 3}), {.pool_size = {0, 2}}); }, {op, "pool_size [0,2]"});
    expect_error<ValueError>([&] { pool(zeros({1, 4, 4, 3}), {.strides = {2, -1}}); }, {op, "strides [2,-1]"});
    expect_error<ShapeError>([&] { pool(zeros({1, 4, 1, 3}), {}); }, {op, "[1,4,1,3]", "pool_size [2,2]"});
    expect_error<DTypeError>([&] { pool(zeros({1, 4, 4, 3}, kI64), {}); }, {op});
  }
}

}  // namespace
}  // namespace gradflow
