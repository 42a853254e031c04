#include "core/optim/fused_cuda.h"

#if GRADFLOW_WITH_CUDA
#include "core/ops/cuda/optimizer_kernels.h"
#include "core/tensor/cuda/launch.h"
#endif

namespace gradflow::optimizers::internal {

#if GRADFLOW_WITH_CUDA
namespace {

bool on_one_gpu(const Tensor& grad, const Variable& var, const std::vector<Variable>& slots) {
  const Tensor& value = var.value_unwatched();
  auto fits = [&](const Tensor& t) {
    return t.device() == value.device() && t.dtype() == value.dtype() && t.is_contiguous();
  };
  if (!value.device().is_cuda() || (value.dtype() != kF32 && value.dtype() != kF64) || !fits(value) || !fits(grad)) {
    return false;
  }
  for (const Variable& s : slots) {
    if (!fits(s.value_unwatched())) return false;
  }
  return true;
}

}  // namespace

bool adam_on_gpu(const Tensor& grad, const Variable& var, const std::vector<Variable>& slots,
                 const AdamConstants<double>& c, const GradientTransform<double>& tr) {
  if (!on_one_gpu(grad, var, slots)) return false;
  const Tensor& w = var.value_unwatched();
  cuda::KernelScope scope(w.device());
  cuda::check(cuda::launch_adam(scope.stream(), cuda::scalar_type(w.dtype()), w.raw_data(), grad.raw_data(),
                                slots[0].value_unwatched().raw_data(), slots[1].value_unwatched().raw_data(),
                                slots.size() > 2 ? slots[2].value_unwatched().raw_data() : nullptr, w.numel(), c, tr),
              "adam update");
  return true;
}

bool sgd_on_gpu(const Tensor& grad, const Variable& var, const std::vector<Variable>& slots, double lr, double momentum,
                bool nesterov, const GradientTransform<double>& tr) {
  if (!on_one_gpu(grad, var, slots)) return false;
  const Tensor& w = var.value_unwatched();
  cuda::KernelScope scope(w.device());
  cuda::check(cuda::launch_sgd(scope.stream(), cuda::scalar_type(w.dtype()), w.raw_data(), grad.raw_data(),
                               slots.empty() ? nullptr : slots[0].value_unwatched().raw_data(), w.numel(), lr, momentum,
                               nesterov, tr),
              "sgd update");
  return true;
}

bool rmsprop_on_gpu(const Tensor& grad, const Variable& var, const Variable& velocity, const Variable& mom,
                    const Variable& avg, const RMSpropConstants<double>& c, const GradientTransform<double>& tr) {
  std::vector<Variable> slots{velocity};
  if (mom.defined()) slots.push_back(mom);
  if (avg.defined()) slots.push_back(avg);
  if (!on_one_gpu(grad, var, slots)) return false;
  const Tensor& w = var.value_unwatched();
  cuda::KernelScope scope(w.device());
  cuda::check(cuda::launch_rmsprop(scope.stream(), cuda::scalar_type(w.dtype()), w.raw_data(), grad.raw_data(),
                                   velocity.value_unwatched().raw_data(),
                                   mom.defined() ? mom.value_unwatched().raw_data() : nullptr,
                                   avg.defined() ? avg.value_unwatched().raw_data() : nullptr, w.numel(), c, tr),
              "rmsprop update");
  return true;
}

bool adagrad_on_gpu(const Tensor& grad, const Variable& var, const std::vector<Variable>& slots, double lr,
                    double epsilon, const GradientTransform<double>& tr) {
  if (!on_one_gpu(grad, var, slots)) return false;
  const Tensor& w = var.value_unwatched();
  cuda::KernelScope scope(w.device());
  cuda::check(cuda::launch_adagrad(scope.stream(), cuda::scalar_type(w.dtype()), w.raw_data(), grad.raw_data(),
                                   slots[0].value_unwatched().raw_data(), w.numel(), lr, epsilon, tr),
              "adagrad update");
  return true;
}

#else

bool rmsprop_on_gpu(const Tensor&, const Variable&, const Variable&, const Variable&, const Variable&,
                    const RMSpropConstants<double>&, const GradientTransform<double>&) {
  return false;
}
bool adagrad_on_gpu(const Tensor&, const Variable&, const std::vector<Variable>&, double, double,
                    const GradientTransform<double>&) {
  return false;
}
bool adam_on_gpu(const Tensor&, const Variable&, const std::vector<Variable>&, const AdamConstants<double>&,
                 const GradientTransform<double>&) {
  return false;
}
bool sgd_on_gpu(const Tensor&, const Variable&, const std::vector<Variable>&, double, double, bool,
                const GradientTransform<double>&) {
  return false;
}

#endif

}  // namespace gradflow::optimizers::internal
