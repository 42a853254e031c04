// RMSprop and Adagrad, Keras 3's rules (epsilon inside the square root):
//   RMSprop  v = rho v + (1 - rho) g^2;  centered: a = rho a + (1 - rho) g, denominator v - a^2 + epsilon,
//            else v + epsilon;  inc = lr g / sqrt(denominator);  momentum > 0: mom = momentum mom + inc,
//            var -= mom;  else var -= inc
//   Adagrad  acc += g^2;  var -= lr g / sqrt(acc + epsilon)
#include <cmath>

#include "core/ops/ops.h"
#include "core/optim/fused.h"
#include "core/optim/fused_cuda.h"
#include "core/optim/optimizers.h"

namespace gradflow::optimizers {
namespace {

using internal::GradientTransform;
using internal::RMSpropConstants;

// Slot pointers: velocity always; mom when kMomentum, avg when kCentered (unused ones are null).
template <bool kMomentum, bool kCentered, typename T>
void rmsprop_loop(int64_t begin, int64_t end, T* __restrict w, const T* __restrict grad, T* __restrict velocity,
                  T* __restrict mom, T* __restrict avg, RMSpropConstants<T> c, GradientTransform<T> tr) {
  for (int64_t i = begin; i < end; ++i) {
    internal::rmsprop_element<kMomentum, kCentered>(w[i], grad[i], velocity[i], kMomentum ? mom + i : nullptr,
                                                    kCentered ? avg + i : nullptr, c, tr);
  }
}

template <typename T>
void adagrad_loop(int64_t begin, int64_t end, T* __restrict w, const T* __restrict grad, T* __restrict acc, T lr,
                  T epsilon, GradientTransform<T> tr) {
  for (int64_t i = begin; i < end; ++i) internal::adagrad_element(w[i], grad[i], acc[i], lr, epsilon, tr);
}

std::vector<SlotSpec> rmsprop_slots(const RMSpropOptions& o) {
  std::vector<SlotSpec> slots{{"rmsprop_velocity"}};
  if (o.momentum > 0) slots.push_back({"rmsprop_momentum"});
  if (o.centered) slots.push_back({"rmsprop_average_gradient"});
  return slots;
}

}  // namespace

RMSprop::RMSprop(RMSpropOptions options)
    : Optimizer(base_options(options), rmsprop_slots(options)), options_(std::move(options)) {
  GF_CHECK(options_.momentum >= 0, ValueError, name(), ": momentum must be >= 0, got ", options_.momentum);
}

std::map<std::string, double> RMSprop::get_config() const {
  std::map<std::string, double> config = Optimizer::get_config();
  config["rho"] = options_.rho;
  config["momentum"] = options_.momentum;
  config["epsilon"] = options_.epsilon;
  config["centered"] = options_.centered;
  return config;
}

void RMSprop::update_step(const Tensor& grad, Variable var, const std::vector<Variable>& slots,
                          const Step& step) {
  bool has_momentum = options_.momentum > 0;
  Variable mom = has_momentum ? slots[1] : Variable();
  Variable avg = options_.centered ? slots[has_momentum ? 2 : 1] : Variable();
  bool fused = internal::dispatch_fused(grad, var, slots, [&](auto tag) {
    using T = typename decltype(tag)::type;
    RMSpropConstants<T> c{T(step.lr), T(options_.rho), T(1 - options_.rho), T(options_.momentum),
                          T(options_.epsilon)};
    GradientTransform<T> tr{T(step.grad_scale), T(step.clipvalue), T(step.decay)};
    T* w = var.value_unwatched().data<T>();
    const T* g = grad.data<T>();
    T* vel = slots[0].value_unwatched().data<T>();
    T* mp = mom.defined() ? mom.value_unwatched().data<T>() : nullptr;
    T* ap = avg.defined() ? avg.value_unwatched().data<T>() : nullptr;
    internal::parallel_for(grad.numel(), [&](int64_t b, int64_t e) {
      if (mp && ap) rmsprop_loop<true, true, T>(b, e, w, g, vel, mp, ap, c, tr);
      if (mp && !ap) rmsprop_loop<true, false, T>(b, e, w, g, vel, mp, ap, c, tr);
      if (!mp && ap) rmsprop_loop<false, true, T>(b, e, w, g, vel, mp, ap, c, tr);
      if (!mp && !ap) rmsprop_loop<false, false, T>(b, e, w, g, vel, mp, ap, c, tr);
    });
  });
  if (fused) return;
  if (internal::rmsprop_on_gpu(grad, var, slots[0], mom, avg,
                               {step.lr, options_.rho, 1 - options_.rho, options_.momentum, options_.epsilon},
                               {step.grad_scale, step.clipvalue, step.decay})) {
    return;
  }

  Tensor g = clipped_gradient(grad, step);
  apply_weight_decay(var, step);
  Variable velocity = slots[0];
  velocity.assign(velocity.value_unwatched() * options_.rho + square(g) * (1 - options_.rho));
  Tensor denominator = velocity.value_unwatched() + options_.epsilon;
  if (avg.defined()) {
    avg.assign(avg.value_unwatched() * options_.rho + g * (1 - options_.rho));
    denominator = velocity.value_unwatched() - square(avg.value_unwatched()) + options_.epsilon;
  }
  Tensor increment = g * step.lr / sqrt(denominator);
  if (mom.defined()) {
    mom.assign(mom.value_unwatched() * options_.momentum + increment);
    increment = mom.value_unwatched();
  }
  var.assign(var.value_unwatched() - increment);
}

Adagrad::Adagrad(AdagradOptions options)
    : Optimizer(base_options(options), {{"adagrad_accumulator", options.initial_accumulator_value}}),
      options_(std::move(options)) {
  GF_CHECK(options_.initial_accumulator_value >= 0, ValueError, name(),
           ": initial_accumulator_value must be >= 0, got ", options_.initial_accumulator_value);
}

std::map<std::string, double> Adagrad::get_config() const {
  std::map<std::string, double> config = Optimizer::get_config();
  config["initial_accumulator_value"] = options_.initial_accumulator_value;
  config["epsilon"] = options_.epsilon;
  return config;
}

void Adagrad::update_step(const Tensor& grad, Variable var, const std::vector<Variable>& slots,
                          const Step& step) {
  bool fused = internal::dispatch_fused(grad, var, slots, [&](auto tag) {
    using T = typename decltype(tag)::type;
    GradientTransform<T> tr{T(step.grad_scale), T(step.clipvalue), T(step.decay)};
    T* w = var.value_unwatched().data<T>();
    const T* g = grad.data<T>();
    T* acc = slots[0].value_unwatched().data<T>();
    T lr = T(step.lr), epsilon = T(options_.epsilon);
    internal::parallel_for(grad.numel(), [&](int64_t b, int64_t e) { adagrad_loop<T>(b, e, w, g, acc, lr, epsilon, tr); });
  });
  if (fused) return;
  if (internal::adagrad_on_gpu(grad, var, slots, step.lr, options_.epsilon, {step.grad_scale, step.clipvalue, step.decay})) {
    return;
  }

  Tensor g = clipped_gradient(grad, step);
  apply_weight_decay(var, step);
  Variable acc = slots[0];
  acc.assign(acc.value_unwatched() + square(g));
  var.assign(var.value_unwatched() - g * step.lr / sqrt(acc.value_unwatched() + options_.epsilon));
}

}  // namespace gradflow::optimizers
