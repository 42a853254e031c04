// Losses (keras.losses): objects that compute a per-sample loss and reduce it, differentiably, with the
// formulas and numerical safeguards of Keras.
//
//   losses::SparseCategoricalCrossentropy loss_fn({.from_logits = true});
//   GradientTape tape;
//   Tensor loss = loss_fn(labels, model_logits);     // mean over the batch, a scalar
//   auto mse = losses::make_loss("mse");             // by Keras name
//
// Reduction (Keras' "sum_over_batch_size" by default): the per-sample losses, times sample_weight when
// given, are summed and divided by their number, not by the sum of the weights.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "core/tensor/tensor.h"

namespace gradflow::losses {

// Keras' backend epsilon: probabilities are clipped to [kEpsilon, 1 - kEpsilon] before a log.
inline constexpr double kEpsilon = 1e-7;

enum class Reduction {
  kSumOverBatchSize,  // sum / number of per-sample values (Keras' default)
  kSum,               // sum
  kNone,              // the weighted per-sample values
};

class Loss {
 public:
  virtual ~Loss() = default;

  // The reduced loss (a scalar unless Reduction::kNone). sample_weight, when defined, is broadcast against
  // the per-sample losses after squeeze_or_expand_to_same_rank (typically [batch]).
  Tensor operator()(const Tensor& y_true, const Tensor& y_pred, const Tensor& sample_weight = Tensor()) const;
  // The per-sample losses, shaped like y_pred without its last axis (Keras' Loss.call).
  virtual Tensor call(const Tensor& y_true, const Tensor& y_pred) const = 0;

  // Keras' snake-case name, e.g. "sparse_categorical_crossentropy".
  const std::string& name() const { return name_; }
  Reduction reduction() const { return reduction_; }

 protected:
  Loss(std::string name, Reduction reduction) : name_(std::move(name)), reduction_(reduction) {}

 private:
  std::string name_;
  Reduction reduction_;
};

// Integer class ids (any integer or float dtype; [batch] or [batch, 1]) against [batch, classes]
// probabilities, or logits with from_logits. Probabilities are clipped to [eps, 1 - eps] and their log
// passed to sparse_softmax_cross_entropy_with_logits, as Keras does on TensorFlow (so a row whose clipped
// probabilities do not sum to 1 is renormalized).
// Extra leading axes are allowed: labels [..., ] with predictions [..., classes].
struct SparseCategoricalCrossentropyOptions {
  bool from_logits = false;
  Reduction reduction = Reduction::kSumOverBatchSize;
  std::string name = "sparse_categorical_crossentropy";
};
class SparseCategoricalCrossentropy : public Loss {
 public:
  explicit SparseCategoricalCrossentropy(SparseCategoricalCrossentropyOptions options = {});
  Tensor call(const Tensor& y_true, const Tensor& y_pred) const override;

 private:
  bool from_logits_;
};

// One-hot (or soft) labels against predictions of the same shape, classes on the last axis. With
// probabilities: p / sum(p), clipped to [eps, 1 - eps], then -sum(y log p); with logits:
// softmax_cross_entropy_with_logits. label_smoothing s turns y into y (1 - s) + s / classes.
struct CategoricalCrossentropyOptions {
  bool from_logits = false;
  double label_smoothing = 0;  // in [0, 1]
  Reduction reduction = Reduction::kSumOverBatchSize;
  std::string name = "categorical_crossentropy";
};
class CategoricalCrossentropy : public Loss {
 public:
  explicit CategoricalCrossentropy(CategoricalCrossentropyOptions options = {});
  Tensor call(const Tensor& y_true, const Tensor& y_pred) const override;

 private:
  CategoricalCrossentropyOptions options_;
};

// Elementwise binary cross-entropy averaged over the last axis. With logits x: softplus(x) - x y (stable
// for any x); with probabilities p clipped to [eps, 1 - eps]: -(y log(p + eps) + (1 - y) log(1 - p + eps)).
// label_smoothing s turns y into y (1 - s) + s / 2. y_true [batch] against y_pred [batch, 1] is expanded.
struct BinaryCrossentropyOptions {
  bool from_logits = false;
  double label_smoothing = 0;  // in [0, 1]
  Reduction reduction = Reduction::kSumOverBatchSize;
  std::string name = "binary_crossentropy";
};
class BinaryCrossentropy : public Loss {
 public:
  explicit BinaryCrossentropy(BinaryCrossentropyOptions options = {});
  Tensor call(const Tensor& y_true, const Tensor& y_pred) const override;

 private:
  BinaryCrossentropyOptions options_;
};

// mean(square(y_pred - y_true)) over the last axis.
struct MeanSquaredErrorOptions {
  Reduction reduction = Reduction::kSumOverBatchSize;
  std::string name = "mean_squared_error";
};
class MeanSquaredError : public Loss {
 public:
  explicit MeanSquaredError(MeanSquaredErrorOptions options = {});
  Tensor call(const Tensor& y_true, const Tensor& y_pred) const override;
};

// mean(abs(y_pred - y_true)) over the last axis.
struct MeanAbsoluteErrorOptions {
  Reduction reduction = Reduction::kSumOverBatchSize;
  std::string name = "mean_absolute_error";
};
class MeanAbsoluteError : public Loss {
 public:
  explicit MeanAbsoluteError(MeanAbsoluteErrorOptions options = {});
  Tensor call(const Tensor& y_true, const Tensor& y_pred) const override;
};

// A loss by Keras name with default options: "sparse_categorical_crossentropy", "categorical_crossentropy",
// "binary_crossentropy", "mean_squared_error" ("mse"), "mean_absolute_error" ("mae"); ValueError naming
// an unknown name and the known ones.
std::unique_ptr<Loss> make_loss(std::string_view name);

// Keras' squeeze_or_expand_to_same_rank: when the ranks differ by one and the higher-rank tensor's last
// axis is 1, that axis is squeezed, or the rank-1 tensor gets a trailing axis (with expand_rank_1).
std::pair<Tensor, Tensor> squeeze_or_expand_to_same_rank(Tensor a, Tensor b, bool expand_rank_1 = true);

}  // namespace gradflow::losses
