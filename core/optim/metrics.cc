#include "core/optim/metrics.h"

#include <algorithm>
#include <cctype>
#include <tuple>

#include "core/autodiff/tape.h"
#include "core/ops/ops.h"
#include "core/optim/losses.h"
#include "core/tensor/error.h"

namespace gradflow::metrics {
namespace {

using losses::squeeze_or_expand_to_same_rank;

// The axes [from, rank).
Axes axes_from(int from, int rank) {
  Axes axes;
  for (int a = from; a < rank; ++a) axes.push_back(a);
  return axes;
}

Tensor as_f64(const Tensor& t) { return t.dtype() == kF64 ? t : t.to(kF64); }

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

}  // namespace

void Mean::update_state(const Tensor& values_in, const Tensor& sample_weight) {
  autodiff::SuspendRecording no_record;
  Tensor values = as_f64(values_in);
  if (!sample_weight.defined()) {
    if (values.rank() > 1) values = mean(values, axes_from(1, values.rank()));
    total_ += sum(values).item();
    count_ += values.rank() >= 1 ? static_cast<double>(values.dim(0)) : 1.0;
    return;
  }
  // Keras' reduce_to_samplewise_values: reduce the values to the weight's rank, weigh, reduce per sample.
  Tensor weight;
  std::tie(values, weight) = squeeze_or_expand_to_same_rank(values, as_f64(sample_weight.to(values.device())));
  if (values.rank() > weight.rank()) values = mean(values, axes_from(weight.rank(), values.rank()));
  weight = broadcast_to(weight, values.shape());
  values = values * weight;
  if (weight.rank() > 1) weight = mean(weight, axes_from(1, weight.rank()));
  if (values.rank() > 1) values = mean(values, axes_from(1, values.rank()));
  total_ += sum(values).item();
  count_ += sum(weight).item();
}

void Mean::merge_state(const std::vector<double>& other) {
  GF_CHECK(other.size() == 2, ValueError, name(), ".merge_state: expected 2 values {total, count}, got ",
           other.size());
  total_ += other[0];
  count_ += other[1];
}

void MeanMetricWrapper::update_state(const Tensor& y_true, const Tensor& y_pred, const Tensor& sample_weight) {
  autodiff::SuspendRecording no_record;
  // Labels follow the predictions to the model's device (host batches, a model on a GPU).
  mean_.update_state(call(y_true.to(y_pred.device()), y_pred), sample_weight);
}

Tensor Accuracy::call(const Tensor& y_true, const Tensor& y_pred) const {
  auto [t, p] = squeeze_or_expand_to_same_rank(as_f64(y_true), as_f64(y_pred));
  return equal(t, p).to(kF64);
}

Tensor SparseCategoricalAccuracy::call(const Tensor& y_true, const Tensor& y_pred) const {
  GF_CHECK(y_pred.rank() >= 1, ShapeError, name(), ": y_pred must have a class axis, got ", shape_str(y_pred.shape()));
  Tensor labels = y_true.rank() == y_pred.rank() ? y_true.squeeze(-1) : y_true;
  return equal(as_f64(labels), as_f64(argmax(y_pred, -1))).to(kF64);
}

Tensor CategoricalAccuracy::call(const Tensor& y_true, const Tensor& y_pred) const {
  return equal(argmax(y_true, -1), argmax(y_pred, -1)).to(kF64);
}

BinaryAccuracy::BinaryAccuracy(BinaryAccuracyOptions options)
    : MeanMetricWrapper(std::move(options.name)), threshold_(options.threshold) {}

Tensor BinaryAccuracy::call(const Tensor& y_true, const Tensor& y_pred) const {
  auto [t, p] = squeeze_or_expand_to_same_rank(as_f64(y_true), as_f64(y_pred));
  Tensor predicted = greater(p, scalar(threshold_, kF64, p.device())).to(kF64);
  return equal(t, predicted).to(kF64);
}

std::string resolve_metric_name(std::string_view metric, std::string_view loss) {
  std::string name = lower(metric);
  if (name != "accuracy" && name != "acc") return name;
  std::string loss_name = lower(loss);
  if (loss_name == "sparse_categorical_crossentropy") return "sparse_categorical_accuracy";
  if (loss_name == "categorical_crossentropy") return "categorical_accuracy";
  if (loss_name == "binary_crossentropy") return "binary_accuracy";
  return "accuracy";
}

std::unique_ptr<Metric> make_metric(std::string_view name, std::string_view loss) {
  std::string resolved = resolve_metric_name(name, loss);
  std::string display(name);
  if (resolved == "accuracy") return std::make_unique<Accuracy>(display);
  if (resolved == "sparse_categorical_accuracy") return std::make_unique<SparseCategoricalAccuracy>(display);
  if (resolved == "categorical_accuracy") return std::make_unique<CategoricalAccuracy>(display);
  if (resolved == "binary_accuracy") return std::make_unique<BinaryAccuracy>(BinaryAccuracyOptions{.name = display});
  if (resolved == "auc") return std::make_unique<AUC>(AUCOptions{.name = display});
  throw ValueError(str_cat("make_metric: unknown metric '", display,
                           "' (known: accuracy, acc, sparse_categorical_accuracy, categorical_accuracy, "
                           "binary_accuracy, auc)"));
}

}  // namespace gradflow::metrics
