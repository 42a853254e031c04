// The optimizers of keras.optimizers, with Keras' defaults and update rules (g is the gradient after
// clipping; every optimizer also takes weight_decay, clipnorm, clipvalue, global_clipnorm and name, see
// optimizer.h):
//
//   SGD      m = momentum * m - lr * g;  var += nesterov ? momentum * m - lr * g : m   (no momentum:
//            var -= lr * g)
//   Adam     m += (g - m)(1 - beta_1);  v += (g^2 - v)(1 - beta_2);  [amsgrad: vhat = max(vhat, v)]
//            var -= lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v or vhat) + epsilon)
//   AdamW    Adam with weight_decay (default 0.004): var -= var * weight_decay * lr first
//   RMSprop  v = rho v + (1 - rho) g^2;  [centered: a = rho a + (1 - rho) g; v' = v - a^2]
//            inc = lr * g / sqrt(v' + epsilon);  momentum > 0: mom = momentum * mom + inc, var -= mom;
//            else var -= inc
//   Adagrad  acc += g^2;  var -= lr * g / sqrt(acc + epsilon)   (acc starts at initial_accumulator_value)
//
// RMSprop and Adagrad put epsilon inside the square root, as Keras 3 does (Keras 2 added it outside).
//
//   optimizers::SGD sgd({.learning_rate = 0.1, .momentum = 0.9, .nesterov = true});
//   optimizers::AdamW adamw({.learning_rate = 3e-4, .weight_decay = 0.01, .clipnorm = 1.0});
#pragma once

#include "core/optim/optimizer.h"

namespace gradflow::optimizers {

struct SGDOptions {
  LearningRate learning_rate = 0.01;
  double momentum = 0;  // in [0, 1]
  bool nesterov = false;
  std::optional<double> weight_decay;
  std::optional<double> clipnorm;
  std::optional<double> clipvalue;
  std::optional<double> global_clipnorm;
  std::string name = "SGD";
};
// Slot (only when momentum > 0): "sgd_momentum".
class SGD : public Optimizer {
 public:
  // ValueError unless 0 <= momentum <= 1.
  explicit SGD(SGDOptions options = {});
  std::map<std::string, double> get_config() const override;

 private:
  bool elementwise() const override { return true; }
  void update_step(const Tensor& grad, Variable var, const std::vector<Variable>& slots,
                   const Step& step) override;
  SGDOptions options_;
};

struct AdamOptions {
  LearningRate learning_rate = 1e-3;
  double beta_1 = 0.9;
  double beta_2 = 0.999;
  double epsilon = 1e-7;
  bool amsgrad = false;
  std::optional<double> weight_decay;
  std::optional<double> clipnorm;
  std::optional<double> clipvalue;
  std::optional<double> global_clipnorm;
  std::string name = "adam";
};
// Slots: "adam_m", "adam_v", and "adam_vhat" with amsgrad.
class Adam : public Optimizer {
 public:
  explicit Adam(AdamOptions options = {});
  std::map<std::string, double> get_config() const override;

 private:
  bool elementwise() const override { return true; }
  void update_step(const Tensor& grad, Variable var, const std::vector<Variable>& slots,
                   const Step& step) override;
  AdamOptions options_;
};

struct AdamWOptions {
  LearningRate learning_rate = 1e-3;
  double weight_decay = 0.004;
  double beta_1 = 0.9;
  double beta_2 = 0.999;
  double epsilon = 1e-7;
  bool amsgrad = false;
  std::optional<double> clipnorm;
  std::optional<double> clipvalue;
  std::optional<double> global_clipnorm;
  std::string name = "adamw";
};
// Adam with decoupled weight decay; the same slots as Adam.
class AdamW : public Adam {
 public:
  explicit AdamW(AdamWOptions options = {});
};

struct RMSpropOptions {
  LearningRate learning_rate = 1e-3;
  double rho = 0.9;
  double momentum = 0;
  double epsilon = 1e-7;
  bool centered = false;
  std::optional<double> weight_decay;
  std::optional<double> clipnorm;
  std::optional<double> clipvalue;
  std::optional<double> global_clipnorm;
  std::string name = "rmsprop";
};
// Slots: "rmsprop_velocity", then "rmsprop_momentum" when momentum > 0, then "rmsprop_average_gradient"
// when centered.
class RMSprop : public Optimizer {
 public:
  explicit RMSprop(RMSpropOptions options = {});
  std::map<std::string, double> get_config() const override;

 private:
  bool elementwise() const override { return true; }
  void update_step(const Tensor& grad, Variable var, const std::vector<Variable>& slots,
                   const Step& step) override;
  RMSpropOptions options_;
};

struct AdagradOptions {
  LearningRate learning_rate = 1e-3;
  double initial_accumulator_value = 0.1;
  double epsilon = 1e-7;
  std::optional<double> weight_decay;
  std::optional<double> clipnorm;
  std::optional<double> clipvalue;
  std::optional<double> global_clipnorm;
  std::string name = "adagrad";
};
// Slot: "adagrad_accumulator".
class Adagrad : public Optimizer {
 public:
  explicit Adagrad(AdagradOptions options = {});
  std::map<std::string, double> get_config() const override;

 private:
  bool elementwise() const override { return true; }
  void update_step(const Tensor& grad, Variable var, const std::vector<Variable>& slots,
                   const Step& step) override;
  AdagradOptions options_;
};

}  // namespace gradflow::optimizers
