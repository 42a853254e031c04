// Losses against values computed here by hand (and the numbers Keras' documentation shows for the same
// inputs), stability at extreme logits and probabilities, and finite-difference gradients in float64.
#include <gtest/gtest.h>

#include <cmath>

#include "core/gradflow.h"
#include "core/optim/losses.h"
#include "tests/core/grad_check.h"

namespace gradflow {
namespace {

using namespace losses;

Tensor f64(const std::vector<double>& values, Shape shape) { return from_vector<double>(values, std::move(shape)); }

// Keras' probability path for one row: clip to [eps, 1 - eps], renormalize, -log of the true class.
double clipped_xent(std::vector<double> p, int label) {
  double total = 0;
  for (double& v : p) total += (v = std::clamp(v, 1e-7, 1 - 1e-7));
  return -std::log(p[label] / total);
}

TEST(Losses, SparseCategoricalFromProbabilities) {
  // keras.losses.SparseCategoricalCrossentropy()([1, 2], ...) == 1.177 in Keras' documentation.
  Tensor y_true = from_vector<int64_t>({1, 2});
  Tensor y_pred = f64({0.05, 0.95, 0, 0.1, 0.8, 0.1}, {2, 3});
  double row0 = clipped_xent({0.05, 0.95, 0}, 1), row1 = clipped_xent({0.1, 0.8, 0.1}, 2);
  SparseCategoricalCrossentropy loss;
  EXPECT_NEAR(loss(y_true, y_pred).item(), (row0 + row1) / 2, 1e-12);
  EXPECT_NEAR(loss(y_true, y_pred).item(), 1.177, 5e-4);
  Tensor weights = f64({0.3, 0.7}, {2});
  EXPECT_NEAR(loss(y_true, y_pred, weights).item(), (0.3 * row0 + 0.7 * row1) / 2, 1e-12);  // Keras: 0.814
  EXPECT_NEAR(SparseCategoricalCrossentropy({.reduction = Reduction::kSum})(y_true, y_pred).item(), row0 + row1, 1e-12);
  Tensor each = SparseCategoricalCrossentropy({.reduction = Reduction::kNone})(y_true, y_pred);
  EXPECT_EQ(each.shape(), (Shape{2}));
  EXPECT_NEAR(each.to_vector<double>()[1], row1, 1e-12);
  // Labels as [batch, 1] floats give the same loss.
  EXPECT_NEAR(loss(f64({1, 2}, {2, 1}), y_pred).item(), (row0 + row1) / 2, 1e-12);
}

TEST(Losses, SparseCategoricalFromLogits) {
  Tensor logits = f64({1, 2, 3, -1, 0, 4}, {2, 3});
  Tensor labels = from_vector<int32_t>({2, 0});
  double lse0 = std::log(std::exp(1) + std::exp(2) + std::exp(3)), lse1 = std::log(std::exp(-1) + 1 + std::exp(4));
  double want = ((lse0 - 3) + (lse1 + 1)) / 2;
  EXPECT_NEAR(SparseCategoricalCrossentropy({.from_logits = true})(labels, logits).item(), want, 1e-12);
  // Leading axes: [2, 1, 3] predictions with [2, 1] labels.
  Tensor per_step = SparseCategoricalCrossentropy({.from_logits = true, .reduction = Reduction::kNone})(
      labels.reshape({2, 1}), logits.reshape({2, 1, 3}));
  EXPECT_EQ(per_step.shape(), (Shape{2, 1}));
  EXPECT_THROW(SparseCategoricalCrossentropy()(from_vector<int64_t>({1, 2, 0}), logits), ShapeError);
}

TEST(Losses, CategoricalCrossentropy) {
  // Keras' documentation: 1.177 for these one-hot labels and probabilities.
  Tensor y_true = f64({0, 1, 0, 0, 0, 1}, {2, 3});
  Tensor y_pred = f64({0.05, 0.95, 0, 0.1, 0.8, 0.1}, {2, 3});
  // Keras' categorical path normalizes, then clips (no renormalization): -log(0.95) and -log(0.1).
  double want = (-std::log(0.95) - std::log(0.1)) / 2;
  EXPECT_NEAR(CategoricalCrossentropy()(y_true, y_pred).item(), want, 1e-12);
  EXPECT_NEAR(CategoricalCrossentropy()(y_true, y_pred).item(), 1.177, 5e-4);
  // Logits with label smoothing 0.3: labels become y * 0.7 + 0.1.
  Tensor logits = f64({1, 2, 3, -1, 0, 4}, {2, 3});
  double lse0 = std::log(std::exp(1) + std::exp(2) + std::exp(3)), lse1 = std::log(std::exp(-1) + 1 + std::exp(4));
  double smooth0 = 0.1 * (lse0 - 1) + 0.8 * (lse0 - 2) + 0.1 * (lse0 - 3);
  double smooth1 = 0.1 * (lse1 + 1) + 0.1 * (lse1 - 0) + 0.8 * (lse1 - 4);
  CategoricalCrossentropy smoothed({.from_logits = true, .label_smoothing = 0.3});
  EXPECT_NEAR(smoothed(y_true, logits).item(), (smooth0 + smooth1) / 2, 1e-12);
  EXPECT_THROW(CategoricalCrossentropy({.label_smoothing = 1.5}), ValueError);
  EXPECT_THROW(CategoricalCrossentropy()(f64({0, 1}, {1, 2}), y_pred), ShapeError);
}

TEST(Losses, BinaryCrossentropy) {
  // Keras' documentation: 0.815 for these probabilities.
  Tensor y_true = f64({0, 1, 0, 0}, {2, 2});
  Tensor y_pred = f64({0.6, 0.4, 0.4, 0.6}, {2, 2});
  auto bce = [](double y, double p) { return -(y * std::log(p + 1e-7) + (1 - y) * std::log(1 - p + 1e-7)); };
  double want = ((bce(0, 0.6) + bce(1, 0.4)) / 2 + (bce(0, 0.4) + bce(0, 0.6)) / 2) / 2;
  EXPECT_NEAR(BinaryCrossentropy()(y_true, y_pred).item(), want, 1e-12);
  EXPECT_NEAR(BinaryCrossentropy()(y_true, y_pred).item(), 0.815, 5e-4);
  // Keras' documentation: 0.865 for these logits.
  Tensor labels = f64({0, 1, 0, 0}, {4});
  Tensor logits = f64({-18.6, 0.51, 2.94, -12.8}, {4});
  auto softplus_ref = [](double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))); };
  double want_logits = (softplus_ref(-18.6) + softplus_ref(0.51) - 0.51 + softplus_ref(2.94) + softplus_ref(-12.8)) / 4;
  EXPECT_NEAR(BinaryCrossentropy({.from_logits = true})(labels, logits).item(), want_logits, 1e-12);
  EXPECT_NEAR(want_logits, 0.865, 5e-4);
  // [batch] labels against [batch, 1] predictions: expanded, not broadcast to [batch, batch].
  Tensor column = BinaryCrossentropy({.from_logits = true, .reduction = Reduction::kNone})(labels, logits.reshape({4, 1}));
  EXPECT_EQ(column.shape(), (Shape{4}));
  // Label smoothing 0.2: labels become y * 0.8 + 0.1.
  double smoothed = ((bce(0.1, 0.6) + bce(0.9, 0.4)) / 2 + (bce(0.1, 0.4) + bce(0.1, 0.6)) / 2) / 2;
  EXPECT_NEAR(BinaryCrossentropy({.label_smoothing = 0.2})(y_true, y_pred).item(), smoothed, 1e-12);
}

TEST(Losses, MeanSquaredAndAbsoluteError) {
  Tensor y_true = f64({0, 1, 0, 0}, {2, 2});
  Tensor y_pred = f64({1, 1, 1, 0.5}, {2, 2});
  // Per sample: mean over the last axis; then the mean over the batch.
  EXPECT_NEAR(MeanSquaredError()(y_true, y_pred).item(), ((1.0 + 0) / 2 + (1 + 0.25) / 2) / 2, 1e-15);
  EXPECT_NEAR(MeanAbsoluteError()(y_true, y_pred).item(), ((1.0 + 0) / 2 + (1 + 0.5) / 2) / 2, 1e-15);
  Tensor weights = f64({2, 0}, {2});
  EXPECT_NEAR(MeanSquaredError()(y_true, y_pred, weights).item(), 2 * 0.5 / 2, 1e-15);
  // Integer labels are cast to the prediction's dtype.
  EXPECT_NEAR(MeanAbsoluteError()(from_vector<int32_t>({0, 1, 0, 0}, {2, 2}), y_pred).item(), 0.625, 1e-15);
}

TEST(Losses, StableAtExtremes) {
  Tensor logits = f64({1000, -1000, 0}, {1, 3});
  EXPECT_NEAR(SparseCategoricalCrossentropy({.from_logits = true})(from_vector<int64_t>({0}), logits).item(), 0, 1e-12);
  EXPECT_NEAR(SparseCategoricalCrossentropy({.from_logits = true})(from_vector<int64_t>({1}), logits).item(), 2000,
              1e-9);
  EXPECT_NEAR(CategoricalCrossentropy({.from_logits = true})(f64({0, 1, 0}, {1, 3}), logits).item(), 2000, 1e-9);
  // Probability 0 for the true class: clipped to 1e-7, not log(0).
  double zero_prob = SparseCategoricalCrossentropy()(from_vector<int64_t>({2}), f64({0.5, 0.5, 0}, {1, 3})).item();
  EXPECT_NEAR(zero_prob, clipped_xent({0.5, 0.5, 0}, 2), 1e-9);
  EXPECT_TRUE(std::isfinite(zero_prob));
  BinaryCrossentropy from_logits({.from_logits = true, .reduction = Reduction::kNone});
  std::vector<double> each = from_logits(f64({1, 0, 1, 0}, {4, 1}), f64({1000, 1000, -1000, -1000}, {4, 1})).to_vector<double>();
  EXPECT_NEAR(each[0], 0, 1e-12);
  EXPECT_NEAR(each[1], 1000, 1e-9);
  EXPECT_NEAR(each[2], 1000, 1e-9);
  EXPECT_NEAR(each[3], 0, 1e-12);
  double certain_wrong = BinaryCrossentropy()(f64({1}, {1}), f64({0}, {1})).item();
  EXPECT_NEAR(certain_wrong, -std::log(2e-7), 1e-9);  // clipped to 1e-7, plus Keras' extra epsilon
  // f32 logits far out of range stay finite, and so do their gradients.
  Tensor big = from_vector<float>({80, -80, 0}, {1, 3});
  GradientTape tape;
  tape.watch(big);
  Tensor loss = SparseCategoricalCrossentropy({.from_logits = true})(from_vector<int64_t>({1}), big);
  for (float g : tape.gradient(loss, {big})[0].to_vector<float>()) EXPECT_TRUE(std::isfinite(g));
  EXPECT_NEAR(loss.item(), 160, 1e-3);
}

TEST(LossGradients, MatchFiniteDifferences) {
  using testing::expect_gradients_match;
  using testing::random_f64;
  Tensor sparse = from_vector<int64_t>({0, 2, 1, 2});
  Tensor onehot = one_hot(sparse, 3, kF64);
  Tensor binary = f64({1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1}, {4, 3});
  Tensor weights = f64({0.5, 1, 2, 0}, {4});
  auto scalar_loss = [](const Loss& loss, const Tensor& y, const Tensor& w = Tensor()) {
    return [&loss, y, w](const std::vector<Tensor>& in) { return loss(y, in[0], w); };
  };
  Tensor logits = random_f64({4, 3}, 1, -3, 3);
  Tensor probs = random_f64({4, 3}, 2, 0.05, 0.95);
  SparseCategoricalCrossentropy sparse_logits({.from_logits = true}), sparse_probs;
  expect_gradients_match(scalar_loss(sparse_logits, sparse), {logits});
  expect_gradients_match(scalar_loss(sparse_probs, sparse, weights), {probs});
  CategoricalCrossentropy cat_logits({.from_logits = true, .label_smoothing = 0.1}), cat_probs;
  expect_gradients_match(scalar_loss(cat_logits, onehot), {logits});
  expect_gradients_match(scalar_loss(cat_probs, onehot), {probs});
  BinaryCrossentropy bin_logits({.from_logits = true}), bin_probs({.label_smoothing = 0.1});
  expect_gradients_match(scalar_loss(bin_logits, binary, weights), {logits});
  expect_gradients_match(scalar_loss(bin_probs, binary), {probs});
  MeanSquaredError mse;
  MeanAbsoluteError mae;
  expect_gradients_match(scalar_loss(mse, probs), {logits});
  expect_gradients_match(scalar_loss(mae, probs), {logits});
}

TEST(Losses, MakeLossByName) {
  EXPECT_EQ(make_loss("sparse_categorical_crossentropy")->name(), "sparse_categorical_crossentropy");
  EXPECT_EQ(make_loss("categorical_crossentropy")->name(), "categorical_crossentropy");
  EXPECT_EQ(make_loss("binary_crossentropy")->name(), "binary_crossentropy");
  EXPECT_EQ(make_loss("mse")->name(), "mean_squared_error");
  EXPECT_EQ(make_loss("MAE")->name(), "mean_absolute_error");
  try {
    make_loss("hinge");
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'hinge'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gradflow
