// The fused optimizer updates on the GPU: one kernel per variable over the variable, its gradient and
// its slots, in place, with the CPU loops' own per-element rules (update_rules.h), instead of a chain of
// ops (about 15 launches per variable for Adam, each with its dispatch and a temporary). Every built-in
// optimizer has one.
#pragma once

#include <vector>

#include "core/autodiff/variable.h"
#include "core/optim/update_rules.h"
#include "core/tensor/tensor.h"

namespace gradflow::optimizers::internal {

// True once launched on the variable's device stream, where the variable, its gradient and every slot
// are contiguous tensors of one dtype (f32 or f64) on one CUDA device; false otherwise (and always in a
// build without CUDA), leaving the caller to its op-based path.
bool adam_on_gpu(const Tensor& grad, const Variable& var, const std::vector<Variable>& slots,
                 const AdamConstants<double>& c, const GradientTransform<double>& tr);
bool sgd_on_gpu(const Tensor& grad, const Variable& var, const std::vector<Variable>& slots, double lr, double momentum,
                bool nesterov, const GradientTransform<double>& tr);

// mom and avg undefined where the options leave them out (no momentum, not centered).
bool rmsprop_on_gpu(const Tensor& grad, const Variable& var, const Variable& velocity, const Variable& mom,
                    const Variable& avg, const RMSpropConstants<double>& c, const GradientTransform<double>& tr);
bool adagrad_on_gpu(const Tensor& grad, const Variable& var, const std::vector<Variable>& slots, double lr,
                    double epsilon, const GradientTransform<double>& tr);

}  // namespace gradflow::optimizers::internal
