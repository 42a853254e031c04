// Every differentiable op against finite differences in float64, over broadcast shapes including
// size-0 and size-1 dimensions.
#include "tests/core/grad_check.h"

namespace gradflow {
namespace {

using testing::expect_gradients_match;
using testing::random_f64;

struct ShapePair {
  Shape a, b;
};
const std::vector<ShapePair> kBroadcastPairs = {
    {{2, 3}, {2, 3}}, {{2, 3}, {3}},       {{4, 1, 3}, {2, 1}}, {{1}, {2, 3}},
    {{}, {2, 2}},     {{0, 3}, {3}},       {{2, 0}, {2, 1}},    {{1, 1}, {1}},
};

using BinaryFn = Tensor (*)(const Tensor&, const Tensor&);

void check_binary(BinaryFn fn, double lo = -1, double hi = 1) {
  for (const ShapePair& p : kBroadcastPairs) {
    SCOPED_TRACE(shape_str(p.a) + " with " + shape_str(p.b));
    expect_gradients_match([fn](const auto& in) { return fn(in[0], in[1]); },
                           {random_f64(p.a, 1, lo, hi), random_f64(p.b, 2, lo, hi)});
  }
}

TEST(GradCheck, Add) { check_binary(add); }
TEST(GradCheck, Sub) { check_binary(sub); }
TEST(GradCheck, Mul) { check_binary(mul); }
TEST(GradCheck, Div) { check_binary(div, 0.5, 2); }
TEST(GradCheck, Pow) { check_binary(pow, 0.5, 2); }
TEST(GradCheck, Maximum) { check_binary(maximum); }
TEST(GradCheck, Minimum) { check_binary(minimum); }

using UnaryFn = Tensor (*)(const Tensor&);
void check_unary(UnaryFn fn, double lo = -2, double hi = 2) {
  for (Shape s : {Shape{2, 3}, Shape{0}, Shape{1}, Shape{}, Shape{3, 0, 2}}) {
    SCOPED_TRACE(shape_str(s));
    expect_gradients_match([fn](const auto& in) { return fn(in[0]); }, {random_f64(s, 3, lo, hi)});
  }
}

TEST(GradCheck, Neg) { check_unary(neg); }
TEST(GradCheck, Exp) { check_unary(exp); }
TEST(GradCheck, Log) { check_unary(log, 0.2, 3); }
TEST(GradCheck, Sqrt) { check_unary(sqrt, 0.2, 3); }
TEST(GradCheck, Rsqrt) { check_unary(rsqrt, 0.2, 3); }
TEST(GradCheck, Abs) { check_unary(abs, 0.1, 2); }
TEST(GradCheck, Square) { check_unary(square); }
TEST(GradCheck, Tanh) { check_unary(tanh); }
TEST(GradCheck, Sigmoid) { check_unary(sigmoid); }
TEST(GradCheck, Relu) { check_unary(relu, 0.1, 2); }
TEST(GradCheck, Softplus) { check_unary(softplus); }
TEST(GradCheck, Erf) { check_unary(erf); }
TEST(GradCheck, Gelu) {
  check_unary([](const Tensor& x) { return gelu(x); });
  check_unary([](const Tensor& x) { return gelu(x, true); });
}

TEST(GradCheck, Where) {
  Tensor cond = from_vector<bool>({true, false, true}, {3});
  expect_gradients_match([&](const auto& in) { return where(cond, in[0], in[1]); },
                         {random_f64({2, 3}, 1), random_f64({1}, 2)});
}

TEST(GradCheck, Clip) {
  expect_gradients_match([](const auto& in) { return clip(in[0], -0.5, 0.5); },
                         {from_vector<double>({-0.9, -0.3, 0.1, 0.45, 0.8}, {5})});
}

TEST(GradCheck, Reductions) {
  for (Shape s : {Shape{2, 3, 4}, Shape{0, 3}, Shape{1, 5}}) {
    for (Axes axes : {Axes{}, Axes{0}, Axes{-1}, Axes{0, 2}}) {
      if (!axes.empty() && (axes.back() >= static_cast<int64_t>(s.size()))) continue;
      for (bool keep : {false, true}) {
        SCOPED_TRACE(shape_str(s) + " axes " + shape_str(Shape(axes.begin(), axes.end())) + (keep ? " keep" : ""));
        expect_gradients_match([&](const auto& in) { return sum(in[0], axes, keep); }, {random_f64(s, 4)});
        expect_gradients_match([&](const auto& in) { return mean(in[0], axes, keep); }, {random_f64(s, 4)});
        if (numel(s) == 0) continue;
        expect_gradients_match([&](const auto& in) { return max(in[0], axes, keep); }, {random_f64(s, 5)});
        expect_gradients_match([&](const auto& in) { return min(in[0], axes, keep); }, {random_f64(s, 5)});
        expect_gradients_match([&](const auto& in) { return logsumexp(in[0], axes, keep); }, {random_f64(s, 6)});
      }
    }
  }
}

TEST(GradCheck, MaxTiesShareGradient) {
  Tensor x = from_vector<double>({1, 3, 3}, {3});
  GradientTape tape;
  tape.watch(x);
  Tensor y = max(x);
  EXPECT_EQ(tape.gradient(y, {x})[0].to_vector<double>(), (std::vector<double>{0, 0.5, 0.5}));
}

TEST(GradCheck, Matmul) {
  struct Case {
    Shape a, b;
    bool ta, tb;
  };
  for (const Case& c : std::vector<Case>{{{2, 3}, {3, 4}, false, false},
                                        {{3, 2}, {3, 4}, true, false},
                                        {{2, 3}, {4, 3}, false, true},
                                        {{3, 2}, {4, 3}, true, true},
                                        {{5, 2, 3}, {3, 4}, false, false},
                                        {{2, 1, 2, 3}, {3, 3, 2}, false, false},
                                        {{0, 3}, {3, 2}, false, false},
                                        {{2, 0}, {0, 2}, false, false},
                                        {{3}, {3, 2}, false, false},
                                        {{2, 3}, {3}, false, false},
                                        {{3}, {3}, false, false}}) {
    SCOPED_TRACE(shape_str(c.a) + " x " + shape_str(c.b));
    expect_gradients_match([&](const auto& in) { return matmul(in[0], in[1], c.ta, c.tb); },
                           {random_f64(c.a, 7), random_f64(c.b, 8)});
  }
  // Transposed views go to BLAS as transposes.
  expect_gradients_match([](const auto& in) { return matmul(in[0].transpose(), in[1]); },
                         {random_f64({3, 2}, 7), random_f64({3, 4}, 8)});
}

TEST(GradCheck, SoftmaxFamily) {
  for (int64_t axis : {-1, 0, 1}) {
    SCOPED_TRACE(axis);
    expect_gradients_match([&](const auto& in) { return softmax(in[0], axis); }, {random_f64({3, 4}, 9)});
    expect_gradients_match([&](const auto& in) { return log_softmax(in[0], axis); }, {random_f64({3, 4}, 9)});
  }
  Tensor labels = from_vector<int64_t>({2, 0, 3}, {3});
  expect_gradients_match([&](const auto& in) { return sparse_softmax_cross_entropy_with_logits(labels, in[0]); },
                         {random_f64({3, 4}, 10)});
  expect_gradients_match([](const auto& in) { return softmax_cross_entropy_with_logits(in[1], in[0]); },
                         {random_f64({3, 4}, 10), softmax(random_f64({3, 4}, 11))});
}

TEST(GradCheck, Normalization) {
  expect_gradients_match([](const auto& in) { return layer_norm(in[0], in[1], in[2]); },
                         {random_f64({3, 4}, 12), random_f64({4}, 13), random_f64({4}, 14)}, 1e-6, 1e-5);
  expect_gradients_match([](const auto& in) { return batch_norm_training(in[0], in[1], in[2]).y; },
                         {random_f64({5, 2, 3}, 15), random_f64({3}, 16), random_f64({3}, 17)}, 1e-6, 1e-5);
  expect_gradients_match(
      [](const auto& in) { return batch_norm_inference(in[0], in[1], exp(in[2]), in[3], in[4]); },
      {random_f64({4, 3}, 18), random_f64({3}, 19), random_f64({3}, 20), random_f64({3}, 21), random_f64({3}, 22)});
}

TEST(GradCheck, Dropout) {
  // A fixed seed gives the same mask in every evaluation, so the function is differentiable.
  expect_gradients_match([](const auto& in) { return dropout(in[0], 0.4, 77); }, {random_f64({4, 5}, 23)});
}

TEST(GradCheck, JoinAndIndex) {
  expect_gradients_match([](const auto& in) { return concat({in[0], in[1], in[2]}, 1); },
                         {random_f64({2, 1}, 1), random_f64({2, 3}, 2), random_f64({2, 0}, 3)});
  expect_gradients_match([](const auto& in) { return stack({in[0], in[1]}, 1); },
                         {random_f64({2, 3}, 1), random_f64({2, 3}, 2)});
  expect_gradients_match([](const auto& in) { return mul(split(in[0], 2, 1)[1], split(in[0], {1, 3}, 1)[0]); },
                         {random_f64({3, 4}, 4)});
  Tensor idx = from_vector<int64_t>({2, 0, 2, 1}, {2, 2});
  expect_gradients_match([&](const auto& in) { return gather(in[0], idx, 0); }, {random_f64({3, 2}, 5)});
  expect_gradients_match([&](const auto& in) { return gather(in[0], idx, 1); }, {random_f64({2, 3, 2}, 6)});
  Tensor ids = from_vector<int32_t>({1, 1, 3}, {3});
  expect_gradients_match([&](const auto& in) { return embedding_lookup(in[0], ids); }, {random_f64({4, 2}, 7)});
}

TEST(GradCheck, Views) {
  expect_gradients_match([](const auto& in) { return in[0].reshape({3, -1}); }, {random_f64({2, 6}, 1)});
  expect_gradients_match([](const auto& in) { return in[0].permute({2, 0, 1}); }, {random_f64({2, 3, 4}, 2)});
  expect_gradients_match([](const auto& in) { return in[0].slice(1, 1, 4, 2); }, {random_f64({2, 5}, 3)});
  expect_gradients_match([](const auto& in) { return in[0].slice(0, -1, -6, -2); }, {random_f64({5, 2}, 4)});
  expect_gradients_match([](const auto& in) { return in[0].expand({4, 2, 3}); }, {random_f64({2, 1}, 5)});
  expect_gradients_match([](const auto& in) { return in[0].transpose().reshape({-1}); }, {random_f64({3, 4}, 6)});
  expect_gradients_match([](const auto& in) { return in[0].unsqueeze(1).squeeze(1); }, {random_f64({3}, 7)});
  expect_gradients_match([](const auto& in) { return in[0].to(kF32).to(kF64); }, {random_f64({3}, 8)}, 1e-3, 1e-4);
}

// Second derivatives: differentiate a gradient computed inside an outer tape.
TEST(GradCheck, SecondDerivativesMatchFiniteDifferences) {
  auto first_grad = [](UnaryFn fn) {
    return [fn](const std::vector<Tensor>& in) {
      GradientTape inner;
      inner.watch(in[0]);
      Tensor y = sum(fn(in[0]));
      return inner.gradient(y, {in[0]})[0];
    };
  };
  for (UnaryFn fn : {+[](const Tensor& x) { return tanh(x); }, +[](const Tensor& x) { return mul(x, mul(x, x)); },
                     +[](const Tensor& x) { return sigmoid(x); }, +[](const Tensor& x) { return softplus(x); },
                     +[](const Tensor& x) { return gelu(x); }, +[](const Tensor& x) { return log_softmax(x); }}) {
    expect_gradients_match(first_grad(fn), {random_f64({2, 3}, 30)}, 1e-5, 1e-5);
  }
  // Mixed partials through matmul: d/dW of |dL/dx|^2.
  expect_gradients_match(
      [](const std::vector<Tensor>& in) {
        GradientTape inner;
        inner.watch(in[0]);
        Tensor y = sum(tanh(matmul(in[0], in[1])));
        Tensor gx = inner.gradient(y, {in[0]})[0];
        return sum(square(gx));
      },
      {random_f64({2, 3}, 31), random_f64({3, 2}, 32)}, 1e-5, 1e-5);
}

}  // namespace
}  // namespace gradflow
