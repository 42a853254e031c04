#include "core/optim/losses.h"

#include <algorithm>
#include <cctype>

#include "core/ops/ops.h"
#include "core/tensor/error.h"

namespace gradflow::losses {
namespace {

// y_true cast to y_pred's dtype and brought to its rank; ShapeError unless the shapes then agree.
std::pair<Tensor, Tensor> matched(const std::string& loss, const Tensor& y_true, const Tensor& y_pred) {
  GF_CHECK(is_floating(y_pred.dtype()), DTypeError, loss, ": y_pred must be floating point, got ",
           dtype_name(y_pred.dtype()));
  auto [t, p] = squeeze_or_expand_to_same_rank(y_true.dtype() == y_pred.dtype() ? y_true : y_true.to(y_pred.dtype()),
                                               y_pred);
  GF_CHECK(t.shape() == p.shape() && p.rank() >= 1, ShapeError, loss, ": y_true ", shape_str(y_true.shape()),
           " and y_pred ", shape_str(y_pred.shape()), " must have the same shape, of rank >= 1");
  return {t, p};
}

void check_smoothing(const std::string& loss, double label_smoothing) {
  GF_CHECK(label_smoothing >= 0 && label_smoothing <= 1, ValueError, loss, ": label_smoothing must be in [0, 1], got ",
           label_smoothing);
}

Tensor reduce(const Tensor& values, Reduction reduction) {
  if (reduction == Reduction::kNone || values.rank() == 0) return values;
  Tensor total = sum(values);
  if (reduction == Reduction::kSum || values.numel() == 0) return total;
  return total / static_cast<double>(values.numel());
}

}  // namespace

std::pair<Tensor, Tensor> squeeze_or_expand_to_same_rank(Tensor a, Tensor b, bool expand_rank_1) {
  if (a.rank() == b.rank() + 1 && a.dim(-1) == 1) {
    if (b.rank() == 1 && expand_rank_1) return {a, b.unsqueeze(-1)};
    return {a.squeeze(-1), b};
  }
  if (b.rank() == a.rank() + 1 && b.dim(-1) == 1) {
    if (a.rank() == 1 && expand_rank_1) return {a.unsqueeze(-1), b};
    return {a, b.squeeze(-1)};
  }
  return {a, b};
}

Tensor Loss::operator()(const Tensor& y_true, const Tensor& y_pred, const Tensor& sample_weight) const {
  // Labels and weights follow the predictions to the model's device (host batches, a model on a GPU).
  Tensor values = call(y_true.to(y_pred.device()), y_pred);
  if (sample_weight.defined()) {
    Tensor weight = sample_weight.to(values.device()).to(values.dtype());
    auto [v, w] = squeeze_or_expand_to_same_rank(values, weight);
    values = v * w;
  }
  return reduce(values, reduction_);
}

SparseCategoricalCrossentropy::SparseCategoricalCrossentropy(SparseCategoricalCrossentropyOptions options)
    : Loss(options.name, options.reduction), from_logits_(options.from_logits) {}

Tensor SparseCategoricalCrossentropy::call(const Tensor& y_true, const Tensor& y_pred) const {
  GF_CHECK(is_floating(y_pred.dtype()) && y_pred.rank() >= 1, DTypeError, name(),
           ": y_pred must be floating point of rank >= 1, got ", shape_str(y_pred.shape()), " ",
           dtype_name(y_pred.dtype()));
  Tensor labels = y_true;
  if (labels.rank() == y_pred.rank() && labels.dim(-1) == 1) labels = labels.squeeze(-1);
  Shape batch(y_pred.shape().begin(), y_pred.shape().end() - 1);
  GF_CHECK(labels.shape() == batch, ShapeError, name(), ": y_true ", shape_str(y_true.shape()),
           " does not fit y_pred ", shape_str(y_pred.shape()), " (expected labels of shape ", shape_str(batch), ")");
  if (is_floating(labels.dtype())) labels = labels.to(kI64);
  Tensor logits = y_pred.reshape({-1, y_pred.dim(-1)});
  if (!from_logits_) logits = log(clip(logits, kEpsilon, 1 - kEpsilon));
  return sparse_softmax_cross_entropy_with_logits(labels.reshape({-1}), logits).reshape(batch);
}

CategoricalCrossentropy::CategoricalCrossentropy(CategoricalCrossentropyOptions options)
    : Loss(options.name, options.reduction), options_(std::move(options)) {
  check_smoothing(name(), options_.label_smoothing);
}

Tensor CategoricalCrossentropy::call(const Tensor& y_true, const Tensor& y_pred) const {
  auto [labels, pred] = matched(name(), y_true, y_pred);
  if (options_.label_smoothing > 0) {
    double s = options_.label_smoothing;
    labels = labels * (1 - s) + s / static_cast<double>(pred.dim(-1));
  }
  if (options_.from_logits) return softmax_cross_entropy_with_logits(labels, pred);
  Tensor p = clip(pred / sum(pred, {-1}, true), kEpsilon, 1 - kEpsilon);
  return -sum(labels * log(p), {-1});
}

BinaryCrossentropy::BinaryCrossentropy(BinaryCrossentropyOptions options)
    : Loss(options.name, options.reduction), options_(std::move(options)) {
  check_smoothing(name(), options_.label_smoothing);
}

Tensor BinaryCrossentropy::call(const Tensor& y_true, const Tensor& y_pred) const {
  auto [labels, pred] = matched(name(), y_true, y_pred);
  if (options_.label_smoothing > 0) labels = labels * (1 - options_.label_smoothing) + 0.5 * options_.label_smoothing;
  Tensor elementwise;
  if (options_.from_logits) {
    // = max(x, 0) - x y + log(1 + exp(-|x|)), TF's sigmoid_cross_entropy_with_logits; softplus is stable.
    elementwise = softplus(pred) - pred * labels;
  } else {
    Tensor p = clip(pred, kEpsilon, 1 - kEpsilon);
    elementwise = -(labels * log(p + kEpsilon) + (1.0 - labels) * log(1.0 - p + kEpsilon));
  }
  return mean(elementwise, {-1});
}

MeanSquaredError::MeanSquaredError(MeanSquaredErrorOptions options) : Loss(options.name, options.reduction) {}

Tensor MeanSquaredError::call(const Tensor& y_true, const Tensor& y_pred) const {
  auto [labels, pred] = matched(name(), y_true, y_pred);
  return mean(square(pred - labels), {-1});
}

MeanAbsoluteError::MeanAbsoluteError(MeanAbsoluteErrorOptions options) : Loss(options.name, options.reduction) {}

Tensor MeanAbsoluteError::call(const Tensor& y_true, const Tensor& y_pred) const {
  auto [labels, pred] = matched(name(), y_true, y_pred);
  return mean(abs(pred - labels), {-1});
}

std::unique_ptr<Loss> make_loss(std::string_view name) {
  std::string key(name);
  std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
  if (key == "sparse_categorical_crossentropy") return std::make_unique<SparseCategoricalCrossentropy>();
  if (key == "categorical_crossentropy") return std::make_unique<CategoricalCrossentropy>();
  if (key == "binary_crossentropy") return std::make_unique<BinaryCrossentropy>();
  if (key == "mean_squared_error" || key == "mse") return std::make_unique<MeanSquaredError>();
  if (key == "mean_absolute_error" || key == "mae") return std::make_unique<MeanAbsoluteError>();
  throw ValueError(str_cat("make_loss: unknown loss '", std::string(name),
                           "' (known: sparse_categorical_crossentropy, categorical_crossentropy, binary_crossentropy, "
                           "mean_squared_error (mse), mean_absolute_error (mae))"));
}

}  // namespace gradflow::losses
