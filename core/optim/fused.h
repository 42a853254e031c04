// Internal to core/optim: helpers for fused optimizer updates, one loop over contiguous host memory that
// reads the gradient once and updates the variable and its slots in place (instead of a chain of ops,
// each allocating a tensor and paying dispatch overhead).
//
//   if (dispatch_fused(grad, var, slots, [&](auto tag) {
//         using T = typename decltype(tag)::type;
//         parallel_for(var.value_unwatched().numel(), [&](int64_t begin, int64_t end) { my_loop<T>(...); });
//       })) return;
//   ... generic op-based path ...
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/autodiff/variable.h"
#include "core/tensor/denormals.h"
#include "core/tensor/tensor.h"
#include "core/optim/update_rules.h"

namespace gradflow::optimizers::internal {

// Elements per parallel chunk: below this an update runs on the calling thread (no OpenMP fork).
inline constexpr int64_t kParallelGrain = int64_t{1} << 18;

inline bool host_contiguous(const Tensor& t, DType dtype) {
  return t.device().type == DeviceType::kCPU && t.dtype() == dtype && t.is_contiguous();
}

// Calls f(TypeTag<float>{}) or f(TypeTag<double>{}) and returns true when the variable, its gradient and
// all its slots are contiguous CPU tensors of that dtype; returns false (calling nothing) otherwise.
template <typename F>
bool dispatch_fused(const Tensor& grad, const Variable& var, const std::vector<Variable>& slots, F&& f) {
  const Tensor& value = var.value_unwatched();
  auto eligible = [&](DType dtype) {
    if (!host_contiguous(value, dtype) || !host_contiguous(grad, dtype)) return false;
    return std::all_of(slots.begin(), slots.end(),
                       [&](const Variable& s) { return host_contiguous(s.value_unwatched(), dtype); });
  };
  ::gradflow::internal::DenormalFlushScope flush_denormals;
  if (eligible(kF32)) {
    f(TypeTag<float>{});
    return true;
  }
  if (eligible(kF64)) {
    f(TypeTag<double>{});
    return true;
  }
  return false;
}

// Runs body(begin, end) over [0, n): on this thread for small n, else in chunks across OpenMP threads.
template <typename F>
void parallel_for(int64_t n, F&& body) {
  if (n <= kParallelGrain) {
    body(int64_t{0}, n);
    return;
  }
  int64_t chunks = (n + kParallelGrain - 1) / kParallelGrain;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) body(c * kParallelGrain, std::min(n, (c + 1) * kParallelGrain));
}

}  // namespace gradflow::optimizers::internal
