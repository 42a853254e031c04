// Metrics (keras.metrics): stateful accumulators updated batch by batch, read with result(). A Metric
// takes labels and predictions (what a model compiles); Mean takes values (a loss tracker); both share
// the StatefulMetric protocol (result, reset_state, state, merge_state, name).
//
//   metrics::SparseCategoricalAccuracy acc;
//   for (...) acc.update_state(labels, logits);   // any number of batches
//   double a = acc.result();                      // over everything seen since reset_state()
//   auto auc = metrics::make_metric("auc");
//
// Distributed evaluation: every metric's state() is a vector of sums (totals, counts, confusion-matrix
// cells), so the states of several replicas combine by elementwise addition. Sum the vectors across
// workers (all_reduce with sum), then on each worker: metric.reset_state(); metric.merge_state(summed);
// result() is then the metric over all workers' batches. Updates are never recorded on GradientTapes.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor/tensor.h"

namespace gradflow::metrics {

// What every metric has: a result, a reset, and a mergeable state.
class StatefulMetric {
 public:
  virtual ~StatefulMetric() = default;

  // The value over every update since construction or the last reset_state().
  virtual double result() const = 0;
  virtual void reset_state() = 0;
  // The accumulated statistics, each a sum over updates (see the file comment).
  virtual std::vector<double> state() const = 0;
  // Adds the state() of a metric of the same class and configuration; ValueError when the size differs.
  virtual void merge_state(const std::vector<double>& other) = 0;

  // The name a training log shows, e.g. "accuracy".
  const std::string& name() const { return name_; }

 protected:
  explicit StatefulMetric(std::string name) : name_(std::move(name)) {}

 private:
  std::string name_;
};

// The (weighted) mean of values, Keras' Mean: without weights each sample (first axis; a scalar is one
// sample) contributes the mean of its values; with sample_weight (broadcast to the values after
// squeeze_or_expand_to_same_rank), result = sum(values * weight) / sum(weight). State: {total, count}.
class Mean : public StatefulMetric {
 public:
  explicit Mean(std::string name = "mean") : StatefulMetric(std::move(name)) {}
  void update_state(const Tensor& values, const Tensor& sample_weight = Tensor());
  double result() const override { return count_ == 0 ? 0.0 : total_ / count_; }  // 0 before any update
  void reset_state() override { total_ = count_ = 0; }
  std::vector<double> state() const override { return {total_, count_}; }
  void merge_state(const std::vector<double>& other) override;

 private:
  double total_ = 0, count_ = 0;
};

// A metric of labels and predictions, Keras' Metric.update_state(y_true, y_pred, sample_weight): what a
// model's compiled metrics are.
class Metric : public StatefulMetric {
 public:
  // Accumulates one batch. sample_weight (optional) weighs each sample, typically shaped [batch].
  virtual void update_state(const Tensor& y_true, const Tensor& y_pred, const Tensor& sample_weight = Tensor()) = 0;

 protected:
  using StatefulMetric::StatefulMetric;
};

// The Mean of a per-sample value computed by call() (Keras' MeanMetricWrapper). State: {total, count}.
class MeanMetricWrapper : public Metric {
 public:
  void update_state(const Tensor& y_true, const Tensor& y_pred, const Tensor& sample_weight = Tensor()) override;
  double result() const override { return mean_.result(); }
  void reset_state() override { mean_.reset_state(); }
  std::vector<double> state() const override { return mean_.state(); }
  void merge_state(const std::vector<double>& other) override { mean_.merge_state(other); }

  // The per-sample (or per-element) values to average, as a float tensor.
  virtual Tensor call(const Tensor& y_true, const Tensor& y_pred) const = 0;

 protected:
  explicit MeanMetricWrapper(std::string name) : Metric(name), mean_(std::move(name)) {}

 private:
  Mean mean_;
};

// How often predictions equal labels exactly (elementwise, after squeeze_or_expand_to_same_rank).
class Accuracy : public MeanMetricWrapper {
 public:
  explicit Accuracy(std::string name = "accuracy") : MeanMetricWrapper(std::move(name)) {}
  Tensor call(const Tensor& y_true, const Tensor& y_pred) const override;
};

// How often argmax(y_pred, -1) equals the integer label (y_true [batch] or [batch, 1], any dtype).
class SparseCategoricalAccuracy : public MeanMetricWrapper {
 public:
  explicit SparseCategoricalAccuracy(std::string name = "sparse_categorical_accuracy")
      : MeanMetricWrapper(std::move(name)) {}
  Tensor call(const Tensor& y_true, const Tensor& y_pred) const override;
};

// How often argmax(y_pred, -1) equals argmax(y_true, -1) (one-hot labels).
class CategoricalAccuracy : public MeanMetricWrapper {
 public:
  explicit CategoricalAccuracy(std::string name = "categorical_accuracy") : MeanMetricWrapper(std::move(name)) {}
  Tensor call(const Tensor& y_true, const Tensor& y_pred) const override;
};

// How often (y_pred > threshold) equals the 0/1 label, elementwise.
struct BinaryAccuracyOptions {
  double threshold = 0.5;
  std::string name = "binary_accuracy";
};
class BinaryAccuracy : public MeanMetricWrapper {
 public:
  explicit BinaryAccuracy(BinaryAccuracyOptions options = {});
  Tensor call(const Tensor& y_true, const Tensor& y_pred) const override;

 private:
  double threshold_;
};

// Area under the ROC curve, Keras' AUC(curve="ROC", summation_method="interpolation"): a confusion matrix
// at num_thresholds thresholds {-eps, 1/(n-1), ..., (n-2)/(n-1), 1+eps}, where a prediction p counts as
// positive at threshold t when p > t; the area is the trapezoidal rule over the (false positive rate,
// true positive rate) points. Labels weigh as in Keras' fast path: y * weight towards positives,
// (1 - y) * weight towards negatives (so soft labels work). Predictions in the same threshold bucket
// count as ties. State: true positives, false positives, true negatives, false negatives, each
// num_thresholds long, in that order.
struct AUCOptions {
  int num_thresholds = 200;  // > 1
  bool from_logits = false;  // apply a sigmoid to y_pred first
  std::string name = "auc";
};
class AUC : public Metric {
 public:
  explicit AUC(AUCOptions options = {});
  void update_state(const Tensor& y_true, const Tensor& y_pred, const Tensor& sample_weight = Tensor()) override;
  double result() const override;
  void reset_state() override;
  std::vector<double> state() const override;
  void merge_state(const std::vector<double>& other) override;
  const std::vector<double>& thresholds() const { return thresholds_; }

 private:
  bool from_logits_;
  std::vector<double> thresholds_;
  std::vector<double> tp_, fp_, tn_, fn_;
};

// The metric a name means given the model's loss, as Keras' compile resolves "accuracy" (or "acc"):
// sparse_categorical_accuracy with "sparse_categorical_crossentropy", categorical_accuracy with
// "categorical_crossentropy", binary_accuracy with "binary_crossentropy", else accuracy (exact match).
// Other names come back lower-cased and unchanged.
std::string resolve_metric_name(std::string_view metric, std::string_view loss = "");

// A metric by Keras name: "accuracy"/"acc" (resolved with the loss name as above, keeping the given name
// for logs), "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy", "auc";
// ValueError naming an unknown name and the known ones.
std::unique_ptr<Metric> make_metric(std::string_view name, std::string_view loss = "");

}  // namespace gradflow::metrics
