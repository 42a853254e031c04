#include "core/optim/schedules.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/tensor/error.h"

namespace gradflow::optimizers {

void LearningRate::check_schedule() const {
  GF_CHECK(schedule_ != nullptr, ValueError, "learning_rate: the schedule is null");
}

namespace schedules {

ExponentialDecay::ExponentialDecay(ExponentialDecayOptions options) : options_(options) {
  GF_CHECK(options_.decay_steps > 0, ValueError, "ExponentialDecay: decay_steps must be > 0, got ",
           options_.decay_steps);
}

double ExponentialDecay::operator()(int64_t step) const {
  double p = static_cast<double>(step) / static_cast<double>(options_.decay_steps);
  if (options_.staircase) p = std::floor(p);
  return options_.initial_learning_rate * std::pow(options_.decay_rate, p);
}

CosineDecay::CosineDecay(CosineDecayOptions options) : options_(options) {
  GF_CHECK(options_.decay_steps > 0, ValueError, "CosineDecay: decay_steps must be > 0, got ", options_.decay_steps);
  GF_CHECK(options_.warmup_steps >= 0, ValueError, "CosineDecay: warmup_steps must be >= 0, got ",
           options_.warmup_steps);
  GF_CHECK(!options_.warmup_target || options_.warmup_steps > 0, ValueError,
           "CosineDecay: warmup_target needs warmup_steps > 0");
}

double CosineDecay::operator()(int64_t step) const {
  const auto& o = options_;
  double decay_steps = static_cast<double>(o.decay_steps);
  auto decayed = [&](double s, double from) {
    double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * s / decay_steps));
    return from * ((1.0 - o.alpha) * cosine + o.alpha);
  };
  double s = static_cast<double>(step);
  if (!o.warmup_target) return decayed(std::min(s, decay_steps), o.initial_learning_rate);
  double warmup = static_cast<double>(o.warmup_steps);
  s = std::min(s, decay_steps + warmup);
  if (s < warmup) return (*o.warmup_target - o.initial_learning_rate) * (s / warmup) + o.initial_learning_rate;
  return decayed(s - warmup, *o.warmup_target);
}

LinearWarmup::LinearWarmup(LearningRate after, LinearWarmupOptions options)
    : after_(std::move(after)), options_(options) {
  GF_CHECK(options_.warmup_steps >= 0, ValueError, "LinearWarmup: warmup_steps must be >= 0, got ",
           options_.warmup_steps);
}

double LinearWarmup::operator()(int64_t step) const {
  if (step >= options_.warmup_steps) return after_.at(step - options_.warmup_steps);
  double fraction = static_cast<double>(step) / static_cast<double>(options_.warmup_steps);
  return options_.initial_learning_rate + (after_.at(0) - options_.initial_learning_rate) * fraction;
}

}  // namespace schedules
}  // namespace gradflow::optimizers
