// Learning-rate schedules (keras.optimizers.schedules) and LearningRate, what an optimizer's
// `learning_rate` option holds: a constant or a schedule of the step.
//
//   auto decay = std::make_shared<schedules::CosineDecay>(schedules::CosineDecayOptions{
//       .initial_learning_rate = 0.0, .decay_steps = 10000, .warmup_target = 1e-3, .warmup_steps = 500});
//   Adam adam({.learning_rate = decay});
//   double lr = (*decay)(1200);   // the rate an optimizer uses when iterations() == 1200
//
// A schedule is evaluated at the optimizer's iteration count before the update: 0 for the first step.
#pragma once

#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace gradflow::optimizers {

namespace schedules {

class LearningRateSchedule {
 public:
  virtual ~LearningRateSchedule() = default;
  // The learning rate at `step` (>= 0).
  virtual double operator()(int64_t step) const = 0;
  // Keras' class name, e.g. "ExponentialDecay".
  virtual std::string name() const = 0;
};

// initial_learning_rate * decay_rate ^ (step / decay_steps); with staircase the exponent is floored.
struct ExponentialDecayOptions {
  double initial_learning_rate = 0;
  int64_t decay_steps = 0;  // > 0
  double decay_rate = 0;
  bool staircase = false;
};
class ExponentialDecay : public LearningRateSchedule {
 public:
  // ValueError unless decay_steps > 0.
  explicit ExponentialDecay(ExponentialDecayOptions options);
  double operator()(int64_t step) const override;
  std::string name() const override { return "ExponentialDecay"; }
  const ExponentialDecayOptions& options() const { return options_; }

 private:
  ExponentialDecayOptions options_;
};

// Keras 3's CosineDecay. Without warmup_target: for p = min(step, decay_steps) / decay_steps,
//   lr = initial_learning_rate * ((1 - alpha) * 0.5 * (1 + cos(pi * p)) + alpha).
// With warmup_target: rises linearly from initial_learning_rate to warmup_target over warmup_steps, then
// decays from warmup_target as above over the next decay_steps (step counted from the end of warmup).
struct CosineDecayOptions {
  double initial_learning_rate = 0;
  int64_t decay_steps = 0;  // > 0
  double alpha = 0;         // the final rate as a fraction of the decayed-from rate
  std::optional<double> warmup_target;
  int64_t warmup_steps = 0;
};
class CosineDecay : public LearningRateSchedule {
 public:
  // ValueError unless decay_steps > 0 and warmup_steps >= 0 (> 0 when warmup_target is set).
  explicit CosineDecay(CosineDecayOptions options);
  double operator()(int64_t step) const override;
  std::string name() const override { return "CosineDecay"; }
  const CosineDecayOptions& options() const { return options_; }

 private:
  CosineDecayOptions options_;
};

}  // namespace schedules

// A constant learning rate or a schedule; converts implicitly from either, so options read
// `.learning_rate = 1e-3` or `.learning_rate = std::make_shared<schedules::ExponentialDecay>(...)`.
class LearningRate {
 public:
  LearningRate(double value) : value_(value) {}  // NOLINT: implicit by design
  template <std::derived_from<schedules::LearningRateSchedule> S>
  LearningRate(std::shared_ptr<S> schedule) : schedule_(std::move(schedule)) {  // NOLINT
    check_schedule();
  }

  // The rate at `step`: the constant, or the schedule's value.
  double at(int64_t step) const { return schedule_ ? (*schedule_)(step) : value_; }
  // Null for a constant rate.
  const std::shared_ptr<const schedules::LearningRateSchedule>& schedule() const { return schedule_; }

 private:
  void check_schedule() const;  // ValueError on a null schedule
  double value_ = 0;
  std::shared_ptr<const schedules::LearningRateSchedule> schedule_;
};

namespace schedules {

// Linear warmup in front of another rate: from initial_learning_rate at step 0 up to after.at(0) at
// step warmup_steps, then after.at(step - warmup_steps).
//
//   auto lr = std::make_shared<schedules::LinearWarmup>(
//       std::make_shared<schedules::ExponentialDecay>(...), schedules::LinearWarmupOptions{.warmup_steps = 100});
struct LinearWarmupOptions {
  int64_t warmup_steps = 0;  // >= 0
  double initial_learning_rate = 0;
};
class LinearWarmup : public LearningRateSchedule {
 public:
  // ValueError when warmup_steps < 0.
  LinearWarmup(LearningRate after, LinearWarmupOptions options);
  double operator()(int64_t step) const override;
  std::string name() const override { return "LinearWarmup"; }

 private:
  LearningRate after_;
  LinearWarmupOptions options_;
};

}  // namespace schedules

}  // namespace gradflow::optimizers
