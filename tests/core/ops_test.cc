// Forward results of the ops against known values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/gradflow.h"

namespace gradflow {
namespace {

std::vector<float> f32(const Tensor& t) { return t.to_vector<float>(); }
Tensor vec(std::vector<float> v, Shape s) { return from_vector<float>(v, s); }

void expect_near(const std::vector<float>& got, const std::vector<float>& want, float tol = 1e-5f) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

TEST(Ops, BroadcastingArithmetic) {
  Tensor a = vec({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor col = vec({10, 20}, {2, 1});
  EXPECT_EQ(f32(a + col), (std::vector<float>{11, 12, 13, 24, 25, 26}));
  EXPECT_EQ(f32(a - 1.0), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(f32(2.0 * a), (std::vector<float>{2, 4, 6, 8, 10, 12}));
  EXPECT_EQ(f32(a / col), (std::vector<float>{0.1f, 0.2f, 0.3f, 0.2f, 0.25f, 0.3f}));
  EXPECT_EQ(f32(pow(a, scalar(2))), (std::vector<float>{1, 4, 9, 16, 25, 36}));
  EXPECT_EQ(f32(maximum(a, scalar(3.5))), (std::vector<float>{3.5, 3.5, 3.5, 4, 5, 6}));
  EXPECT_EQ(f32(minimum(a, col.transpose().slice(1, 0, 1) - 7.0)), (std::vector<float>{1, 2, 3, 3, 3, 3}));
  EXPECT_EQ((vec({1, 2, 3}, {3}) + zeros({0, 1})).shape(), (Shape{0, 3}));
  // Transposed and sliced operands.
  EXPECT_EQ(f32(a.transpose() + a.transpose()), (std::vector<float>{2, 8, 4, 10, 6, 12}));
  EXPECT_EQ(f32(a.slice(1, 0, 3, 2) * 10.0), (std::vector<float>{10, 30, 40, 60}));
}

TEST(Ops, IntegerPowIsExact) {
  // 3^39 needs 62 bits: pow through double rounds it; negative exponents truncate toward zero; u8 wraps.
  Tensor base = from_vector<int64_t>({3, 3, 2, 1, -1, -1, 0, 7});
  Tensor exponent = from_vector<int64_t>({39, 1, -1, -5, -3, -4, 0, 2});
  EXPECT_EQ(pow(base, exponent).to_vector<int64_t>(),
            (std::vector<int64_t>{4052555153018976267, 3, 0, 1, -1, 1, 1, 49}));
  EXPECT_EQ(pow(from_vector<int32_t>({-2, 2}), from_vector<int32_t>({31, 31})).to_vector<int32_t>(),
            (std::vector<int32_t>{std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::min()}));
  EXPECT_EQ(pow(from_vector<uint8_t>({2, 3}), from_vector<uint8_t>({9, 5})).to_vector<uint8_t>(),
            (std::vector<uint8_t>{0, 243}));
}

TEST(Ops, IntegerArithmeticNeverTraps) {
  Tensor a = from_vector<int32_t>({7, -7, std::numeric_limits<int32_t>::min(), 5});
  Tensor b = from_vector<int32_t>({2, 2, -1, 0});
  EXPECT_EQ((div(a, b).to_vector<int32_t>()), (std::vector<int32_t>{3, -3, std::numeric_limits<int32_t>::min(), 0}));
  EXPECT_EQ((mul(a, b).to_vector<int32_t>())[0], 14);
  EXPECT_EQ((add(from_vector<uint8_t>({250}), from_vector<uint8_t>({10})).to_vector<int>()), (std::vector<int>{4}));
}

TEST(Ops, UnaryMath) {
  Tensor x = vec({-1, 0, 0.5, 2}, {4});
  expect_near(f32(exp(x)), {std::exp(-1.f), 1, std::exp(0.5f), std::exp(2.f)});
  expect_near(f32(abs(x)), {1, 0, 0.5, 2});
  expect_near(f32(relu(x)), {0, 0, 0.5, 2});
  expect_near(f32(sigmoid(x)), {0.26894142f, 0.5f, 0.62245933f, 0.88079708f});
  expect_near(f32(tanh(x)), {-0.76159416f, 0, 0.46211716f, 0.96402758f});
  expect_near(f32(softplus(x)), {0.31326169f, 0.69314718f, 0.97407698f, 2.12692801f});
  expect_near(f32(gelu(x)), {-0.15865525f, 0, 0.34573123f, 1.95449974f});
  expect_near(f32(gelu(x, true)), {-0.15880801f, 0, 0.34571401f, 1.95459769f});
  expect_near(f32(sign(x)), {-1, 0, 1, 1});
  expect_near(f32(square(x)), {1, 0, 0.25, 4});
  Tensor p = vec({0.25, 1, 4}, {3});
  expect_near(f32(sqrt(p)), {0.5, 1, 2});
  expect_near(f32(rsqrt(p)), {2, 1, 0.5});
  expect_near(f32(log(p)), {std::log(0.25f), 0, std::log(4.f)});
  EXPECT_EQ(f32(sigmoid(vec({-1000, 1000}, {2}))), (std::vector<float>{0, 1}));
  EXPECT_EQ(f32(softplus(vec({-1000, 1000}, {2}))), (std::vector<float>{0, 1000}));
  EXPECT_EQ(f32(neg(x)), (std::vector<float>{1, -0.f, -0.5, -2}));
}

TEST(Ops, ComparisonsWhereClip) {
  Tensor a = vec({1, 2, 3}, {3});
  Tensor b = vec({3, 2, 1}, {3});
  EXPECT_EQ((less(a, b).to_vector<bool>()), (std::vector<bool>{true, false, false}));
  EXPECT_EQ((greater_equal(a, b).to_vector<bool>()), (std::vector<bool>{false, true, true}));
  EXPECT_EQ((equal(a, b).to_vector<bool>()), (std::vector<bool>{false, true, false}));
  EXPECT_EQ((not_equal(a, b).to_vector<bool>()), (std::vector<bool>{true, false, true}));
  EXPECT_EQ((logical_or(less(a, b), greater(a, b)).to_vector<bool>()), (std::vector<bool>{true, false, true}));
  EXPECT_EQ((logical_not(less_equal(a, b)).to_vector<bool>()), (std::vector<bool>{false, false, true}));
  EXPECT_EQ(f32(where(less(a, b), a, b)), (std::vector<float>{1, 2, 1}));
  EXPECT_EQ(f32(where(from_vector<bool>({true, false}, {2, 1}), a, scalar(0))), (std::vector<float>{1, 2, 3, 0, 0, 0}));
  EXPECT_EQ(f32(clip(vec({-5, 0.5, 9}, {3}), 0, 1)), (std::vector<float>{0, 0.5, 1}));
}

// where's unit-stride loops (both branches full, either one a broadcast scalar) against the strided one,
// for each dtype width, over a length with a vector body and a tail, with NaN and infinities selected
// bit for bit.
TEST(Ops, WhereFastPathsMatchTheStridedLoop) {
  const int64_t n = 1000 + 13;
  Tensor mask = greater(random_uniform({n}, 0, 1, kF32, kCPU, 7), scalar(0.3));
  std::vector<bool> m = mask.to_vector<bool>();
  for (DType dtype : {kF32, kF64, kI64, kI32, kU8, kF16, kBF16}) {
    Tensor x = arange(0, n, 1, dtype), y = arange(n, 0, -1, dtype);
    if (is_floating(dtype)) {
      x = where(equal(arange(0, n), scalar(5.0)), full({n}, NAN, dtype), x);
      y = where(equal(arange(0, n), scalar(6.0)), full({n}, -INFINITY, dtype), y);
    }
    std::vector<double> xv = x.to(kF64).to_vector<double>(), yv = y.to(kF64).to_vector<double>();
    auto check = [&](const Tensor& got, auto want_at, const char* form) {
      std::vector<double> g = got.to(kF64).to_vector<double>();
      ASSERT_EQ(g.size(), static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        double w = want_at(i);
        if (std::isnan(w)) {
          EXPECT_TRUE(std::isnan(g[i])) << dtype_name(dtype) << " " << form << " at " << i;
        } else {
          ASSERT_EQ(g[i], w) << dtype_name(dtype) << " " << form << " at " << i;
        }
      }
    };
    check(where(mask, x, y), [&](int64_t i) { return m[i] ? xv[i] : yv[i]; }, "both full");
    check(where(mask, x, scalar(2, dtype)), [&](int64_t i) { return m[i] ? xv[i] : 2.0; }, "scalar else");
    check(where(mask, scalar(9, dtype), y), [&](int64_t i) { return m[i] ? 9.0 : yv[i]; }, "scalar then");
    // Strided operands take the general loop: the same values.
    Tensor xs = stack({x, y}, 1).slice(1, 0, 1);  // [n, 1], a stride of 2
    check(where(mask.reshape({n, 1}), xs, y.reshape({n, 1})).reshape({n}), [&](int64_t i) { return m[i] ? xv[i] : yv[i]; },
          "strided");
  }
}

TEST(Ops, Reductions) {
  Tensor x = arange(0, 24).reshape({2, 3, 4});
  EXPECT_FLOAT_EQ(sum(x).item<float>(), 276);
  EXPECT_EQ(f32(sum(x, {0, 2})), (std::vector<float>{60, 92, 124}));
  EXPECT_EQ(sum(x, {1}, true).shape(), (Shape{2, 1, 4}));
  EXPECT_EQ(f32(mean(x, {-1})), (std::vector<float>{1.5, 5.5, 9.5, 13.5, 17.5, 21.5}));
  EXPECT_EQ(f32(max(x, {1})), (std::vector<float>{8, 9, 10, 11, 20, 21, 22, 23}));
  EXPECT_EQ(f32(min(x.transpose(0, 2), {0})), (std::vector<float>{0, 12, 4, 16, 8, 20}));
  EXPECT_EQ((argmax(vec({1, 9, 3, 7, 2, 8}, {2, 3}), 1).to_vector<int64_t>()), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ((argmax(vec({1, 9, 3, 7, 2, 8}, {2, 3}), 0).to_vector<int64_t>()), (std::vector<int64_t>{1, 0, 1}));
  expect_near(f32(logsumexp(vec({1000, 1000, 0, 0}, {2, 2}), {1})), {1000 + std::log(2.f), std::log(2.f)}, 1e-3f);
  EXPECT_EQ(f32(sum(zeros({0, 3}), {0})), (std::vector<float>{0, 0, 0}));
  EXPECT_TRUE(std::isnan(mean(zeros({0})).item<float>()));
  EXPECT_EQ(sum(from_vector<int32_t>({1, 2, 3})).item<int>(), 6);
  constexpr float kInf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(max(vec({-kInf, -kInf}, {2})).item<float>(), -kInf);
  EXPECT_EQ(min(vec({kInf}, {1})).item<float>(), kInf);
  EXPECT_EQ(max(from_vector<int32_t>({-5, -7})).item<int>(), -5);
  EXPECT_EQ(f32(sum_to(ones({2, 3, 4}), {3, 1})), (std::vector<float>{8, 8, 8}));
  // A large sum is exact in double accumulation and independent of thread count.
  EXPECT_FLOAT_EQ(sum(ones({1 << 20})).item<float>(), 1 << 20);
}

TEST(Ops, Matmul) {
  Tensor a = vec({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = vec({1, 0, 0, 1, 1, 1}, {3, 2});
  EXPECT_EQ(f32(matmul(a, b)), (std::vector<float>{4, 5, 10, 11}));
  EXPECT_EQ(f32(matmul(a, a, false, true)), (std::vector<float>{14, 32, 32, 77}));
  EXPECT_EQ(f32(matmul(a, a, true, false)).size(), 9u);
  EXPECT_EQ(f32(matmul(a.transpose(), a.transpose(), true, false)), (std::vector<float>{14, 32, 32, 77}));
  Tensor batch = stack({a, a * 2.0});
  EXPECT_EQ(matmul(batch, b).shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(f32(matmul(batch, b)), (std::vector<float>{4, 5, 10, 11, 8, 10, 20, 22}));
  EXPECT_EQ(f32(matmul(vec({1, 1, 1}, {3}), b)), (std::vector<float>{2, 2}));
  EXPECT_EQ(matmul(vec({1, 1, 1}, {3}), vec({1, 2, 3}, {3})).item<float>(), 6);
  EXPECT_EQ(f32(matmul(zeros({2, 0}), zeros({0, 2}))), (std::vector<float>{0, 0, 0, 0}));
  Tensor d = matmul(a.to(kF64), b.to(kF64));
  EXPECT_EQ(d.dtype(), kF64);
  EXPECT_EQ(f32(matmul(a.to(kBF16), b.to(kBF16))), (std::vector<float>{4, 5, 10, 11}));
}

TEST(Ops, SoftmaxAndCrossEntropy) {
  Tensor logits = vec({1, 2, 3, 1, 1, 1}, {2, 3});
  expect_near(f32(softmax(logits)), {0.09003057f, 0.24472847f, 0.66524096f, 1 / 3.f, 1 / 3.f, 1 / 3.f});
  expect_near(f32(softmax(logits, 0)), {0.5f, 0.7310586f, 0.8807971f, 0.5f, 0.2689414f, 0.1192029f});
  expect_near(f32(log_softmax(logits)), {-2.40760596f, -1.40760596f, -0.40760596f, -1.0986123f, -1.0986123f, -1.0986123f});
  Tensor labels = from_vector<int32_t>({2, 0});
  expect_near(f32(sparse_softmax_cross_entropy_with_logits(labels, logits)), {0.40760596f, 1.0986123f});
  expect_near(f32(softmax_cross_entropy_with_logits(one_hot(labels, 3), logits)), {0.40760596f, 1.0986123f});
  // Stable for huge logits.
  expect_near(f32(sparse_softmax_cross_entropy_with_logits(from_vector<int32_t>({0}), vec({1000, -1000}, {1, 2}))), {0});
}

TEST(Ops, DropoutScalesKeptValues) {
  Tensor x = ones({10000});
  Tensor y = dropout(x, 0.25, 3);
  std::vector<float> v = f32(y);
  int kept = 0;
  for (float e : v) {
    ASSERT_TRUE(e == 0.f || std::abs(e - 1 / 0.75f) < 1e-6f);
    kept += e != 0;
  }
  EXPECT_NEAR(kept / 10000.0, 0.75, 0.02);
  EXPECT_EQ(v, f32(dropout(x, 0.25, 3)));
  EXPECT_EQ(f32(dropout(x, 0.0)), f32(x));
}

TEST(Ops, Normalization) {
  Tensor x = vec({1, 2, 3, 4, 2, 4, 6, 8}, {2, 4});
  Tensor y = layer_norm(x, ones({4}), vec({0, 0, 0, 1}, {4}), 0);
  expect_near(f32(y), {-1.3416408f, -0.4472136f, 0.4472136f, 2.3416408f, -1.3416408f, -0.4472136f, 0.4472136f,
                       2.3416408f}, 1e-4f);
  BatchNormResult bn = batch_norm_training(vec({1, 10, 3, 30}, {2, 2}), ones({2}), zeros({2}), 0);
  expect_near(f32(bn.batch_mean), {2, 20});
  expect_near(f32(bn.batch_variance), {1, 100});
  expect_near(f32(bn.y), {-1, -1, 1, 1});
  expect_near(f32(batch_norm_inference(vec({4, 4}, {1, 2}), vec({2, 0}, {2}), vec({4, 16}, {2}), vec({1, 2}, {2}),
                                       vec({0, 1}, {2}), 0)),
              {1, 3});
}

TEST(Ops, JoinSplitGather) {
  Tensor a = vec({1, 2, 3, 4}, {2, 2});
  Tensor b = vec({5, 6}, {2, 1});
  EXPECT_EQ(f32(concat({a, b}, 1)), (std::vector<float>{1, 2, 5, 3, 4, 6}));
  EXPECT_EQ(f32(concat({a, a.slice(0, 0, 1)}, 0)), (std::vector<float>{1, 2, 3, 4, 1, 2}));
  EXPECT_EQ(stack({a, a}, 2).shape(), (Shape{2, 2, 2}));
  std::vector<Tensor> parts = split(arange(0, 6), {1, 2, 3});
  EXPECT_EQ(f32(parts[2]), (std::vector<float>{3, 4, 5}));
  EXPECT_EQ(split(arange(0, 6).reshape({2, 3}), 3, 1).size(), 3u);
  Tensor params = arange(0, 6).reshape({3, 2});
  EXPECT_EQ(f32(gather(params, from_vector<int64_t>({2, 0, 2}))), (std::vector<float>{4, 5, 0, 1, 4, 5}));
  EXPECT_EQ(f32(gather(params, from_vector<int32_t>({1}), 1)), (std::vector<float>{1, 3, 5}));
  EXPECT_EQ(gather(params, from_vector<int64_t>({0, 1, 2, 0}, {2, 2})).shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(f32(one_hot(from_vector<int64_t>({0, 2}), 3)), (std::vector<float>{1, 0, 0, 0, 0, 1}));
  EXPECT_EQ(embedding_lookup(params, from_vector<int32_t>({1, 1}, {1, 2})).shape(), (Shape{1, 2, 2}));
}

}  // namespace
}  // namespace gradflow
