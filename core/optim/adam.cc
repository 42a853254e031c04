// Adam and AdamW with Keras' update rule (the same in Keras 2 and 3):
//   alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
//   m += (g - m)(1 - beta_1);  v += (g^2 - v)(1 - beta_2);  [amsgrad: vhat = max(vhat, v), used for v]
//   var -= alpha * m / (sqrt(v) + epsilon)
// AdamW is Adam with a default weight_decay, which the base class applies (decoupled) before the update.
#include <cmath>

#include "core/ops/ops.h"
#include "core/optim/fused.h"
#include "core/optim/fused_cuda.h"
#include "core/optim/optimizers.h"

namespace gradflow::optimizers {
namespace {

using internal::GradientTransform;

using internal::AdamConstants;

template <bool kAmsgrad, typename T>
void adam_loop(int64_t begin, int64_t end, T* __restrict w, const T* __restrict grad, T* __restrict m,
               T* __restrict v, T* __restrict vhat, AdamConstants<T> c, GradientTransform<T> tr) {
  for (int64_t i = begin; i < end; ++i) {
    internal::adam_element<kAmsgrad>(w[i], grad[i], m[i], v[i], kAmsgrad ? vhat + i : nullptr, c, tr);
  }
}

std::vector<SlotSpec> adam_slots(const AdamOptions& o) {
  std::vector<SlotSpec> slots{{"adam_m"}, {"adam_v"}};
  if (o.amsgrad) slots.push_back({"adam_vhat"});
  return slots;
}

AdamOptions adam_options(const AdamWOptions& o) {
  return {o.learning_rate, o.beta_1,   o.beta_2,    o.epsilon,         o.amsgrad,
          o.weight_decay,  o.clipnorm, o.clipvalue, o.global_clipnorm, o.name};
}

}  // namespace

Adam::Adam(AdamOptions options) : Optimizer(base_options(options), adam_slots(options)), options_(std::move(options)) {
  GF_CHECK(options_.beta_1 >= 0 && options_.beta_1 < 1 && options_.beta_2 >= 0 && options_.beta_2 < 1, ValueError,
           name(), ": beta_1 and beta_2 must be in [0, 1), got ", options_.beta_1, " and ", options_.beta_2);
}

AdamW::AdamW(AdamWOptions options) : Adam(adam_options(options)) {}

std::map<std::string, double> Adam::get_config() const {
  std::map<std::string, double> config = Optimizer::get_config();
  config["beta_1"] = options_.beta_1;
  config["beta_2"] = options_.beta_2;
  config["epsilon"] = options_.epsilon;
  config["amsgrad"] = options_.amsgrad;
  return config;
}

void Adam::update_step(const Tensor& grad, Variable var, const std::vector<Variable>& slots,
                       const Step& step) {
  double t = static_cast<double>(step.t);
  double alpha = step.lr * std::sqrt(1 - std::pow(options_.beta_2, t)) / (1 - std::pow(options_.beta_1, t));
  bool fused = internal::dispatch_fused(grad, var, slots, [&](auto tag) {
    using T = typename decltype(tag)::type;
    AdamConstants<T> c{T(alpha), T(1 - options_.beta_1), T(1 - options_.beta_2), T(options_.epsilon)};
    GradientTransform<T> tr{T(step.grad_scale), T(step.clipvalue), T(step.decay)};
    T* w = var.value_unwatched().data<T>();
    const T* g = grad.data<T>();
    T* m = slots[0].value_unwatched().data<T>();
    T* v = slots[1].value_unwatched().data<T>();
    internal::parallel_for(grad.numel(), [&](int64_t b, int64_t e) {
      if (options_.amsgrad) {
        adam_loop<true, T>(b, e, w, g, m, v, slots[2].value_unwatched().data<T>(), c, tr);
      } else {
        adam_loop<false, T>(b, e, w, g, m, v, nullptr, c, tr);
      }
    });
  });
  if (fused) return;
  if (internal::adam_on_gpu(grad, var, slots, {alpha, 1 - options_.beta_1, 1 - options_.beta_2, options_.epsilon},
                            {step.grad_scale, step.clipvalue, step.decay})) {
    return;
  }

  Tensor g = clipped_gradient(grad, step);
  apply_weight_decay(var, step);
  Variable m = slots[0];
  Variable v = slots[1];
  m.assign(m.value_unwatched() + (g - m.value_unwatched()) * (1 - options_.beta_1));
  v.assign(v.value_unwatched() + (square(g) - v.value_unwatched()) * (1 - options_.beta_2));
  Tensor second = v.value_unwatched();
  if (options_.amsgrad) {
    Variable vhat = slots[2];
    vhat.assign(maximum(vhat.value_unwatched(), second));
    second = vhat.value_unwatched();
  }
  const Tensor& w = var.value_unwatched();
  var.assign(w - m.value_unwatched() * alpha / (sqrt(second) + options_.epsilon));
}

}  // namespace gradflow::optimizers
