// SGD with optional (Nesterov) momentum, Keras 3's rule:
//   m = momentum * m - lr * g;  var += nesterov ? momentum * m - lr * g : m;   without momentum var -= lr * g
#include "core/ops/ops.h"
#include "core/optim/fused.h"
#include "core/optim/fused_cuda.h"
#include "core/optim/optimizers.h"

namespace gradflow::optimizers {
namespace {

using internal::GradientTransform;

template <typename T>
void sgd_loop(int64_t begin, int64_t end, T* __restrict w, const T* __restrict grad, T lr,
              GradientTransform<T> tr) {
  for (int64_t i = begin; i < end; ++i) internal::sgd_element(w[i], grad[i], lr, tr);
}

template <bool kNesterov, typename T>
void momentum_loop(int64_t begin, int64_t end, T* __restrict w, const T* __restrict grad, T* __restrict m, T lr,
                   T momentum, GradientTransform<T> tr) {
  for (int64_t i = begin; i < end; ++i) internal::momentum_element<kNesterov>(w[i], grad[i], m[i], lr, momentum, tr);
}

std::vector<SlotSpec> sgd_slots(const SGDOptions& o) {
  if (o.momentum == 0) return {};
  return {{"sgd_momentum"}};
}

}  // namespace

SGD::SGD(SGDOptions options) : Optimizer(base_options(options), sgd_slots(options)), options_(std::move(options)) {
  GF_CHECK(options_.momentum >= 0 && options_.momentum <= 1, ValueError, name(),
           ": momentum must be in [0, 1], got ", options_.momentum);
}

std::map<std::string, double> SGD::get_config() const {
  std::map<std::string, double> config = Optimizer::get_config();
  config["momentum"] = options_.momentum;
  config["nesterov"] = options_.nesterov;
  return config;
}

void SGD::update_step(const Tensor& grad, Variable var, const std::vector<Variable>& slots,
                      const Step& step) {
  bool fused = internal::dispatch_fused(grad, var, slots, [&](auto tag) {
    using T = typename decltype(tag)::type;
    GradientTransform<T> tr{T(step.grad_scale), T(step.clipvalue), T(step.decay)};
    T* w = var.value_unwatched().data<T>();
    const T* g = grad.data<T>();
    T lr = T(step.lr), momentum = T(options_.momentum);
    internal::parallel_for(grad.numel(), [&](int64_t b, int64_t e) {
      if (slots.empty()) {
        sgd_loop<T>(b, e, w, g, lr, tr);
      } else if (options_.nesterov) {
        momentum_loop<true, T>(b, e, w, g, slots[0].value_unwatched().data<T>(), lr, momentum, tr);
      } else {
        momentum_loop<false, T>(b, e, w, g, slots[0].value_unwatched().data<T>(), lr, momentum, tr);
      }
    });
  });
  if (fused) return;
  if (internal::sgd_on_gpu(grad, var, slots, step.lr, options_.momentum, options_.nesterov,
                           {step.grad_scale, step.clipvalue, step.decay})) {
    return;
  }

  Tensor g = clipped_gradient(grad, step);
  apply_weight_decay(var, step);
  const Tensor& w = var.value_unwatched();
  if (slots.empty()) {
    var.assign(w - g * step.lr);
    return;
  }
  Variable m = slots[0];
  m.assign(m.value_unwatched() * options_.momentum - g * step.lr);
  if (options_.nesterov) {
    var.assign(w + (m.value_unwatched() * options_.momentum - g * step.lr));
  } else {
    var.assign(w + m.value_unwatched());
  }
}

}  // namespace gradflow::optimizers
