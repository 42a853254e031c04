// Metrics against known values (the examples of Keras' documentation, and AUC against the Mann-Whitney
// statistic computed here), accumulation over batches, reset, and merging states.
#include <gtest/gtest.h>

#include "core/gradflow.h"
#include "core/optim/metrics.h"

namespace gradflow {
namespace {

using namespace metrics;

Tensor f32(const std::vector<float>& values, Shape shape) { return from_vector<float>(values, std::move(shape)); }

TEST(Metrics, AccuracyExactMatch) {
  Accuracy m;
  m.update_state(f32({1, 2, 3, 4}, {4, 1}), f32({0, 2, 3, 4}, {4, 1}));
  EXPECT_DOUBLE_EQ(m.result(), 0.75);
  m.reset_state();
  m.update_state(f32({1, 2, 3, 4}, {4, 1}), f32({0, 2, 3, 4}, {4, 1}), f32({1, 1, 0, 0}, {4}));
  EXPECT_DOUBLE_EQ(m.result(), 0.5);
  EXPECT_EQ(m.name(), "accuracy");
}

TEST(Metrics, SparseCategoricalAccuracy) {
  SparseCategoricalAccuracy m;
  Tensor y_pred = f32({0.1, 0.6, 0.3, 0.05, 0.95, 0}, {2, 3});
  m.update_state(f32({2, 1}, {2, 1}), y_pred);
  EXPECT_DOUBLE_EQ(m.result(), 0.5);
  m.reset_state();
  m.update_state(from_vector<int64_t>({2, 1}), y_pred, f32({0.7, 0.3}, {2}));
  EXPECT_NEAR(m.result(), 0.3, 1e-7);
  // Accumulates across batches until reset.
  m.reset_state();
  m.update_state(from_vector<int32_t>({1, 0}), y_pred);                   // 1 of 2
  m.update_state(from_vector<int32_t>({0}), f32({0.9, 0.05, 0.05}, {1, 3}));  // 1 of 1
  EXPECT_NEAR(m.result(), 2.0 / 3.0, 1e-12);
  m.reset_state();
  EXPECT_EQ(m.result(), 0.0);
}

TEST(Metrics, CategoricalAccuracy) {
  CategoricalAccuracy m;
  Tensor y_true = f32({0, 0, 1, 0, 1, 0}, {2, 3});
  Tensor y_pred = f32({0.1, 0.9, 0.8, 0.05, 0.95, 0}, {2, 3});
  m.update_state(y_true, y_pred);
  EXPECT_DOUBLE_EQ(m.result(), 0.5);
  m.reset_state();
  m.update_state(y_true, y_pred, f32({0.7, 0.3}, {2}));
  EXPECT_NEAR(m.result(), 0.3, 1e-7);
}

TEST(Metrics, BinaryAccuracy) {
  BinaryAccuracy m;
  Tensor y_true = f32({1, 1, 0, 0}, {4, 1});
  Tensor y_pred = f32({0.98, 1, 0, 0.6}, {4, 1});
  m.update_state(y_true, y_pred);
  EXPECT_DOUBLE_EQ(m.result(), 0.75);
  m.reset_state();
  m.update_state(y_true, y_pred, f32({1, 0, 0, 1}, {4}));
  EXPECT_DOUBLE_EQ(m.result(), 0.5);
  BinaryAccuracy strict({.threshold = 0.99});
  strict.update_state(f32({1, 1, 0, 0}, {4}), y_pred);  // [batch] labels, [batch, 1] predictions
  EXPECT_DOUBLE_EQ(strict.result(), 0.75);
}

TEST(Metrics, MeanOfValues) {
  Mean m;
  m.update_state(f32({1, 3, 5, 7}, {4}));
  EXPECT_DOUBLE_EQ(m.result(), 4.0);
  m.update_state(scalar(9));  // a scalar is one sample
  EXPECT_DOUBLE_EQ(m.result(), 5.0);
  m.reset_state();
  m.update_state(f32({1, 3, 5, 7}, {4}), f32({1, 1, 0, 0}, {4}));
  EXPECT_DOUBLE_EQ(m.result(), 2.0);
  m.reset_state();
  m.update_state(f32({1, 2, 3, 4}, {2, 2}));  // per-sample means 1.5 and 3.5
  EXPECT_DOUBLE_EQ(m.result(), 2.5);
  EXPECT_EQ(m.state(), (std::vector<double>{5.0, 2.0}));
  m.reset_state();
  m.update_state(scalar(0.5), scalar(32.0));  // a batch loss weighted by its batch size
  m.update_state(scalar(2.0), scalar(8.0));
  EXPECT_DOUBLE_EQ(m.result(), (0.5 * 32 + 2.0 * 8) / 40);
}

// The probability that a random positive scores above a random negative (ties count half), weighted.
double mann_whitney(const std::vector<float>& labels, const std::vector<float>& scores, const std::vector<float>& w) {
  double wins = 0, pairs = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    for (size_t j = 0; j < labels.size(); ++j) {
      if (labels[i] != 1 || labels[j] != 0) continue;
      double weight = w[i] * w[j];
      pairs += weight;
      wins += weight * (scores[i] > scores[j] ? 1.0 : scores[i] == scores[j] ? 0.5 : 0.0);
    }
  }
  return wins / pairs;
}

TEST(Metrics, AucKerasExample) {
  // Keras' documentation: thresholds {-1e-7, 0.5, 1 + 1e-7}, tp = [2, 1, 0], fp = [2, 0, 0], tn = [0, 2, 2],
  // fn = [0, 1, 2]; tpr = [1, 0.5, 0], fpr = [1, 0, 0]; area 0.75.
  AUC m({.num_thresholds = 3});
  m.update_state(f32({0, 0, 1, 1}, {4}), f32({0, 0.5, 0.3, 0.9}, {4}));
  EXPECT_DOUBLE_EQ(m.result(), 0.75);
  EXPECT_EQ(m.state(), (std::vector<double>{2, 1, 0, 2, 0, 0, 0, 2, 2, 0, 1, 2}));
}

TEST(Metrics, AucEqualsMannWhitneyWhenScoresAreInSeparateBuckets) {
  std::vector<float> labels = {0, 0, 1, 1, 0, 1, 1, 0};
  std::vector<float> scores = {0.1, 0.4, 0.35, 0.8, 0.7, 0.65, 0.05, 0.9};
  std::vector<float> weights = {1, 2, 1, 0.5, 1, 3, 1, 1};
  AUC m;
  m.update_state(f32(labels, {8}), f32(scores, {8}));
  EXPECT_NEAR(m.result(), mann_whitney(labels, scores, std::vector<float>(8, 1)), 1e-12);
  m.reset_state();
  m.update_state(f32(labels, {8, 1}), f32(scores, {8, 1}), f32(weights, {8}));
  EXPECT_NEAR(m.result(), mann_whitney(labels, scores, weights), 1e-12);
  // Scores in the same bucket are ties: half credit.
  m.reset_state();
  m.update_state(f32({0, 1}, {2}), f32({0.5, 0.5}, {2}));
  EXPECT_DOUBLE_EQ(m.result(), 0.5);
  // Logits: a sigmoid first, which keeps the order.
  AUC logits({.from_logits = true});
  logits.update_state(f32({0, 1, 0, 1}, {4}), f32({-3, 2, 0.5, -1}, {4}));
  EXPECT_NEAR(logits.result(), mann_whitney({0, 1, 0, 1}, {-3, 2, 0.5, -1}, {1, 1, 1, 1}), 1e-12);
  // Only one class seen: the rates are 0 (divide_no_nan), so the area is 0, as in Keras.
  AUC one_class;
  one_class.update_state(f32({1, 1}, {2}), f32({0.2, 0.9}, {2}));
  EXPECT_EQ(one_class.result(), 0.0);
  EXPECT_THROW(AUC({.num_thresholds = 1}), ValueError);
}

TEST(Metrics, MergedStatesEqualOneMetricOverAllBatches) {
  std::vector<float> labels = {0, 0, 1, 1, 0, 1, 1, 0};
  std::vector<float> scores = {0.1, 0.4, 0.35, 0.8, 0.7, 0.65, 0.05, 0.9};
  Tensor first_y = f32({0, 0, 1, 1}, {4}), first_p = f32({0.1, 0.4, 0.35, 0.8}, {4});
  Tensor second_y = f32({0, 1, 1, 0}, {4}), second_p = f32({0.7, 0.65, 0.05, 0.9}, {4});

  AUC whole, worker0, worker1;
  whole.update_state(f32(labels, {8}), f32(scores, {8}));
  worker0.update_state(first_y, first_p);
  worker1.update_state(second_y, second_p);
  // What a distributed evaluation does: sum the states, then merge the sum into a reset metric.
  std::vector<double> summed = worker0.state();
  for (size_t i = 0; i < summed.size(); ++i) summed[i] += worker1.state()[i];
  worker0.reset_state();
  worker0.merge_state(summed);
  EXPECT_DOUBLE_EQ(worker0.result(), whole.result());

  BinaryAccuracy acc_whole, acc0, acc1;
  acc_whole.update_state(f32(labels, {8}), f32(scores, {8}));
  acc0.update_state(first_y, first_p);
  acc1.update_state(second_y, second_p);
  acc0.merge_state(acc1.state());
  EXPECT_DOUBLE_EQ(acc0.result(), acc_whole.result());
  EXPECT_THROW(acc0.merge_state(whole.state()), ValueError);
  EXPECT_THROW(whole.merge_state({1.0, 2.0}), ValueError);
}

TEST(Metrics, AccuracyResolvesAgainstTheLoss) {
  EXPECT_EQ(resolve_metric_name("accuracy", "sparse_categorical_crossentropy"), "sparse_categorical_accuracy");
  EXPECT_EQ(resolve_metric_name("acc", "categorical_crossentropy"), "categorical_accuracy");
  EXPECT_EQ(resolve_metric_name("accuracy", "binary_crossentropy"), "binary_accuracy");
  EXPECT_EQ(resolve_metric_name("accuracy", "mean_squared_error"), "accuracy");
  EXPECT_EQ(resolve_metric_name("AUC", "binary_crossentropy"), "auc");

  auto acc = make_metric("accuracy", "sparse_categorical_crossentropy");
  EXPECT_EQ(acc->name(), "accuracy");  // the name the user asked for, as Keras logs it
  EXPECT_NE(dynamic_cast<SparseCategoricalAccuracy*>(acc.get()), nullptr);
  acc->update_state(from_vector<int64_t>({2, 1}), f32({0.1, 0.6, 0.3, 0.05, 0.95, 0}, {2, 3}));
  EXPECT_DOUBLE_EQ(acc->result(), 0.5);
  EXPECT_NE(dynamic_cast<BinaryAccuracy*>(make_metric("acc", "binary_crossentropy").get()), nullptr);
  EXPECT_NE(dynamic_cast<AUC*>(make_metric("auc").get()), nullptr);
  EXPECT_EQ(make_metric("categorical_accuracy")->name(), "categorical_accuracy");
  try {
    make_metric("precision");
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'precision'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gradflow
