#include "core/ops/cuda/optimizer_kernels.h"
#include "core/tensor/cuda/kernel_common.cuh"

namespace gradflow::cuda {
namespace {

using optimizers::internal::AdamConstants;
using optimizers::internal::GradientTransform;
using optimizers::internal::RMSpropConstants;

template <typename T>
GradientTransform<T> narrow(const GradientTransform<double>& tr) {
  return {static_cast<T>(tr.scale), static_cast<T>(tr.limit), static_cast<T>(tr.decay)};
}

template <bool kAmsgrad, typename T>
__global__ void adam_kernel(T* w, const T* grad, T* m, T* v, T* vhat, int64_t n, AdamConstants<T> c,
                            GradientTransform<T> tr) {
  GF_GRID_STRIDE_LOOP(i, n) {
    optimizers::internal::adam_element<kAmsgrad>(w[i], grad[i], m[i], v[i], kAmsgrad ? vhat + i : nullptr, c, tr);
  }
}

template <typename T>
__global__ void sgd_kernel(T* w, const T* grad, int64_t n, T lr, GradientTransform<T> tr) {
  GF_GRID_STRIDE_LOOP(i, n) { optimizers::internal::sgd_element(w[i], grad[i], lr, tr); }
}

template <bool kNesterov, typename T>
__global__ void momentum_kernel(T* w, const T* grad, T* m, int64_t n, T lr, T momentum, GradientTransform<T> tr) {
  GF_GRID_STRIDE_LOOP(i, n) { optimizers::internal::momentum_element<kNesterov>(w[i], grad[i], m[i], lr, momentum, tr); }
}

template <bool kMomentum, bool kCentered, typename T>
__global__ void rmsprop_kernel(T* w, const T* grad, T* velocity, T* mom, T* avg, int64_t n, RMSpropConstants<T> c,
                               GradientTransform<T> tr) {
  GF_GRID_STRIDE_LOOP(i, n) {
    optimizers::internal::rmsprop_element<kMomentum, kCentered>(w[i], grad[i], velocity[i], kMomentum ? mom + i : nullptr,
                                                                kCentered ? avg + i : nullptr, c, tr);
  }
}

template <typename T>
__global__ void adagrad_kernel(T* w, const T* grad, T* acc, int64_t n, T lr, T epsilon, GradientTransform<T> tr) {
  GF_GRID_STRIDE_LOOP(i, n) { optimizers::internal::adagrad_element(w[i], grad[i], acc[i], lr, epsilon, tr); }
}

// f32 and f64 only: the CPU's fused loops take no other dtype either.
template <typename F>
cudaError_t visit_f32_f64(ScalarType t, F&& f) {
  switch (t) {
    case ScalarType::kF32: return f(Tag<float>{});
    case ScalarType::kF64: return f(Tag<double>{});
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t launch_adam(cudaStream_t stream, ScalarType type, void* w, const void* grad, void* m, void* v, void* vhat,
                        int64_t n, const AdamConstants<double>& c, const GradientTransform<double>& tr) {
  if (n == 0) return cudaSuccess;
  return visit_f32_f64(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const AdamConstants<T> ct{static_cast<T>(c.alpha), static_cast<T>(c.one_minus_beta_1),
                              static_cast<T>(c.one_minus_beta_2), static_cast<T>(c.epsilon)};
    T* wt = static_cast<T*>(w);
    const T* gt = static_cast<const T*>(grad);
    if (vhat) {
      adam_kernel<true, T><<<grid_for(n), kBlock, 0, stream>>>(wt, gt, static_cast<T*>(m), static_cast<T*>(v),
                                                               static_cast<T*>(vhat), n, ct, narrow<T>(tr));
    } else {
      adam_kernel<false, T><<<grid_for(n), kBlock, 0, stream>>>(wt, gt, static_cast<T*>(m), static_cast<T*>(v), nullptr,
                                                                n, ct, narrow<T>(tr));
    }
    return cudaGetLastError();
  });
}

cudaError_t launch_sgd(cudaStream_t stream, ScalarType type, void* w, const void* grad, void* m, int64_t n, double lr,
                       double momentum, bool nesterov, const GradientTransform<double>& tr) {
  if (n == 0) return cudaSuccess;
  return visit_f32_f64(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* wt = static_cast<T*>(w);
    const T* gt = static_cast<const T*>(grad);
    const T lrt = static_cast<T>(lr), mt = static_cast<T>(momentum);
    if (!m) {
      sgd_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(wt, gt, n, lrt, narrow<T>(tr));
    } else if (nesterov) {
      momentum_kernel<true, T><<<grid_for(n), kBlock, 0, stream>>>(wt, gt, static_cast<T*>(m), n, lrt, mt, narrow<T>(tr));
    } else {
      momentum_kernel<false, T><<<grid_for(n), kBlock, 0, stream>>>(wt, gt, static_cast<T*>(m), n, lrt, mt, narrow<T>(tr));
    }
    return cudaGetLastError();
  });
}

cudaError_t launch_rmsprop(cudaStream_t stream, ScalarType type, void* w, const void* grad, void* velocity, void* mom,
                           void* avg, int64_t n, const RMSpropConstants<double>& c, const GradientTransform<double>& tr) {
  if (n == 0) return cudaSuccess;
  return visit_f32_f64(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const RMSpropConstants<T> ct{static_cast<T>(c.lr), static_cast<T>(c.rho), static_cast<T>(c.one_minus_rho),
                                 static_cast<T>(c.momentum), static_cast<T>(c.epsilon)};
    T* wt = static_cast<T*>(w);
    const T* gt = static_cast<const T*>(grad);
    T* vt = static_cast<T*>(velocity);
    T* mt = static_cast<T*>(mom);
    T* at = static_cast<T*>(avg);
    const unsigned grid = grid_for(n);
    if (mom && avg) rmsprop_kernel<true, true, T><<<grid, kBlock, 0, stream>>>(wt, gt, vt, mt, at, n, ct, narrow<T>(tr));
    if (mom && !avg) rmsprop_kernel<true, false, T><<<grid, kBlock, 0, stream>>>(wt, gt, vt, mt, at, n, ct, narrow<T>(tr));
    if (!mom && avg) rmsprop_kernel<false, true, T><<<grid, kBlock, 0, stream>>>(wt, gt, vt, mt, at, n, ct, narrow<T>(tr));
    if (!mom && !avg) rmsprop_kernel<false, false, T><<<grid, kBlock, 0, stream>>>(wt, gt, vt, mt, at, n, ct, narrow<T>(tr));
    return cudaGetLastError();
  });
}

cudaError_t launch_adagrad(cudaStream_t stream, ScalarType type, void* w, const void* grad, void* acc, int64_t n,
                           double lr, double epsilon, const GradientTransform<double>& tr) {
  if (n == 0) return cudaSuccess;
  return visit_f32_f64(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    adagrad_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(static_cast<T*>(w), static_cast<const T*>(grad),
                                                          static_cast<T*>(acc), n, static_cast<T>(lr),
                                                          static_cast<T>(epsilon), narrow<T>(tr));
    return cudaGetLastError();
  });
}

}  // namespace gradflow::cuda
