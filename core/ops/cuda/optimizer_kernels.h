// Launchers of optimizer_kernels.cu: the fused optimizer updates on the GPU, one kernel per variable
// that updates the variable and its slots in place, element by element with the CPU loops' own rules
// (core/optim/update_rules.h). Every pointer is to n contiguous elements of `type` (f32 or f64).
#pragma once

#include "core/optim/update_rules.h"
#include "core/tensor/cuda/kernel_types.h"

namespace gradflow::cuda {

// Adam / AdamW; vhat only with amsgrad (null otherwise).
cudaError_t launch_adam(cudaStream_t stream, ScalarType type, void* w, const void* grad, void* m, void* v, void* vhat,
                        int64_t n, const optimizers::internal::AdamConstants<double>& c,
                        const optimizers::internal::GradientTransform<double>& tr);

// SGD; m (the momentum slot) null without momentum.
cudaError_t launch_sgd(cudaStream_t stream, ScalarType type, void* w, const void* grad, void* m, int64_t n, double lr,
                       double momentum, bool nesterov, const optimizers::internal::GradientTransform<double>& tr);

// RMSprop; mom null without momentum, avg null unless centered.
cudaError_t launch_rmsprop(cudaStream_t stream, ScalarType type, void* w, const void* grad, void* velocity, void* mom,
                           void* avg, int64_t n, const optimizers::internal::RMSpropConstants<double>& c,
                           const optimizers::internal::GradientTransform<double>& tr);

// Adagrad.
cudaError_t launch_adagrad(cudaStream_t stream, ScalarType type, void* w, const void* grad, void* acc, int64_t n,
                           double lr, double epsilon, const optimizers::internal::GradientTransform<double>& tr);

}  // namespace gradflow::cuda
