// AUC: confusion matrices at fixed thresholds, accumulated on the host, and the trapezoidal ROC area.
#include <algorithm>

#include "core/autodiff/tape.h"
#include "core/ops/ops.h"
#include "core/optim/losses.h"
#include "core/optim/metrics.h"
#include "core/tensor/error.h"

namespace gradflow::metrics {
namespace {

// Keras' epsilon, which puts the outer thresholds just outside [0, 1].
constexpr double kThresholdEpsilon = 1e-7;

double divide_no_nan(double a, double b) { return b == 0 ? 0.0 : a / b; }

}  // namespace

AUC::AUC(AUCOptions options) : Metric(std::move(options.name)), from_logits_(options.from_logits) {
  int n = options.num_thresholds;
  GF_CHECK(n > 1, ValueError, name(), ": num_thresholds must be > 1, got ", n);
  thresholds_.push_back(0.0 - kThresholdEpsilon);
  for (int i = 0; i < n - 2; ++i) thresholds_.push_back((i + 1) * 1.0 / (n - 1));
  thresholds_.push_back(1.0 + kThresholdEpsilon);
  reset_state();
}

void AUC::reset_state() {
  size_t n = thresholds_.size();
  tp_.assign(n, 0);
  fp_.assign(n, 0);
  tn_.assign(n, 0);
  fn_.assign(n, 0);
}

void AUC::update_state(const Tensor& y_true, const Tensor& y_pred, const Tensor& sample_weight) {
  autodiff::SuspendRecording no_record;
  Tensor pred = y_pred.to(kF64);
  if (from_logits_) pred = sigmoid(pred);
  auto [labels_t, pred_t] = losses::squeeze_or_expand_to_same_rank(y_true.to(kF64), pred);
  GF_CHECK(labels_t.shape() == pred_t.shape(), ShapeError, name(), ": y_true ", shape_str(y_true.shape()),
           " and y_pred ", shape_str(y_pred.shape()), " must have the same shape");
  std::vector<double> labels = labels_t.to_vector<double>();
  std::vector<double> preds = pred_t.to_vector<double>();
  std::vector<double> weights(preds.size(), 1.0);
  if (sample_weight.defined()) {
    auto [w, p] = losses::squeeze_or_expand_to_same_rank(sample_weight.to(kF64), pred_t);
    weights = broadcast_to(w, p.shape()).to_vector<double>();
  }
  // Histograms by how many thresholds each prediction exceeds (0..n): a prediction above k thresholds is
  // positive at thresholds 0..k-1 and negative at k..n-1.
  size_t n = thresholds_.size();
  std::vector<double> positives(n + 1, 0), negatives(n + 1, 0);
  for (size_t i = 0; i < preds.size(); ++i) {
    size_t above = std::lower_bound(thresholds_.begin(), thresholds_.end(), preds[i]) - thresholds_.begin();
    positives[above] += labels[i] * weights[i];
    negatives[above] += (1 - labels[i]) * weights[i];
  }
  // At threshold j: predicted positive are the buckets above j, predicted negative the rest.
  double pos_above = 0, neg_above = 0, pos_total = 0, neg_total = 0;
  for (size_t k = 0; k <= n; ++k) {
    pos_total += positives[k];
    neg_total += negatives[k];
  }
  for (size_t j = n; j-- > 0;) {
    pos_above += positives[j + 1];
    neg_above += negatives[j + 1];
    tp_[j] += pos_above;
    fp_[j] += neg_above;
    fn_[j] += pos_total - pos_above;
    tn_[j] += neg_total - neg_above;
  }
}

double AUC::result() const {
  size_t n = thresholds_.size();
  double area = 0;
  for (size_t i = 0; i + 1 < n; ++i) {
    double tpr0 = divide_no_nan(tp_[i], tp_[i] + fn_[i]), tpr1 = divide_no_nan(tp_[i + 1], tp_[i + 1] + fn_[i + 1]);
    double fpr0 = divide_no_nan(fp_[i], fp_[i] + tn_[i]), fpr1 = divide_no_nan(fp_[i + 1], fp_[i + 1] + tn_[i + 1]);
    area += (fpr0 - fpr1) * (tpr0 + tpr1) / 2;
  }
  return area;
}

std::vector<double> AUC::state() const {
  std::vector<double> out;
  out.reserve(4 * tp_.size());
  for (const auto* part : {&tp_, &fp_, &tn_, &fn_}) out.insert(out.end(), part->begin(), part->end());
  return out;
}

void AUC::merge_state(const std::vector<double>& other) {
  size_t n = thresholds_.size();
  GF_CHECK(other.size() == 4 * n, ValueError, name(), ".merge_state: expected ", 4 * n,
           " values (tp, fp, tn, fn at each threshold), got ", other.size());
  for (size_t j = 0; j < n; ++j) {
    tp_[j] += other[j];
    fp_[j] += other[n + j];
    tn_[j] += other[2 * n + j];
    fn_[j] += other[3 * n + j];
  }
}

}  // namespace gradflow::metrics
