// The per-element update rules of the fused optimizer loops, shared by the CPU loops (adam.cc, sgd.cc)
// and the CUDA kernels (core/ops/cuda/optimizer_kernels.cu), so both devices apply the same arithmetic.
// Plain C++ that nvcc compiles too: no gradflow or abseil headers.
#pragma once

#include <math.h>

#if defined(__CUDACC__)
#define GF_HOST_DEVICE __host__ __device__
#else
#define GF_HOST_DEVICE
#endif

namespace gradflow::optimizers::internal {

GF_HOST_DEVICE inline float square_root(float x) { return ::sqrtf(x); }
GF_HOST_DEVICE inline double square_root(double x) { return ::sqrt(x); }

// The gradient as the update sees it: scaled by the clip-norm factor, then limited to [-limit, limit]
// (limit is +inf without clipvalue). Branch-free so that loops using it vectorize.
template <typename T>
GF_HOST_DEVICE inline T clip_gradient(T g, T scale, T limit) {
  g *= scale;
  g = g < -limit ? -limit : g;
  return g > limit ? limit : g;
}

// The per-element constants every fused loop receives, in its dtype.
template <typename T>
struct GradientTransform {
  T scale;  // clipnorm / global_clipnorm factor
  T limit;  // clipvalue
  T decay;  // weight_decay * learning_rate: w -= w * decay before the update
};

template <typename T>
struct AdamConstants {
  T alpha;  // lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
  T one_minus_beta_1, one_minus_beta_2, epsilon;
};

// Adam (Keras' rule): m += (g - m)(1 - beta_1); v += (g^2 - v)(1 - beta_2); [amsgrad: vhat = max(vhat, v),
// used for v]; w -= alpha * m / (sqrt(v) + epsilon), after the decay. vhat is read only with kAmsgrad.
template <bool kAmsgrad, typename T>
GF_HOST_DEVICE inline void adam_element(T& w, T grad, T& m, T& v, T* vhat, const AdamConstants<T>& c,
                                        const GradientTransform<T>& tr) {
  T g = clip_gradient(grad, tr.scale, tr.limit);
  T mi = m + (g - m) * c.one_minus_beta_1;
  T vi = v + (g * g - v) * c.one_minus_beta_2;
  m = mi;
  v = vi;
  if constexpr (kAmsgrad) {
    vi = vi > *vhat ? vi : *vhat;
    *vhat = vi;
  }
  w = w - w * tr.decay - c.alpha * mi / (square_root(vi) + c.epsilon);
}

// SGD without momentum: w -= lr * g, after the decay.
template <typename T>
GF_HOST_DEVICE inline void sgd_element(T& w, T grad, T lr, const GradientTransform<T>& tr) {
  T g = clip_gradient(grad, tr.scale, tr.limit);
  w = w - w * tr.decay - lr * g;
}

// SGD with momentum (Keras 3): m = momentum * m - lr * g; w += nesterov ? momentum * m - lr * g : m.
template <bool kNesterov, typename T>
GF_HOST_DEVICE inline void momentum_element(T& w, T grad, T& m, T lr, T momentum, const GradientTransform<T>& tr) {
  T g = clip_gradient(grad, tr.scale, tr.limit);
  T wi = w - w * tr.decay;
  T mi = momentum * m - lr * g;
  m = mi;
  w = kNesterov ? wi + (momentum * mi - lr * g) : wi + mi;
}

template <typename T>
struct RMSpropConstants {
  T lr, rho, one_minus_rho, momentum, epsilon;
};

// RMSprop (Keras 3, epsilon inside the square root): v = rho v + (1 - rho) g^2; centered: a = rho a +
// (1 - rho) g and the denominator v - a^2 + epsilon, else v + epsilon; inc = lr g / sqrt(denominator);
// with momentum mom = momentum mom + inc, w -= mom, else w -= inc. mom is read only with kMomentum, avg
// only with kCentered.
template <bool kMomentum, bool kCentered, typename T>
GF_HOST_DEVICE inline void rmsprop_element(T& w, T grad, T& velocity, T* mom, T* avg, const RMSpropConstants<T>& c,
                                           const GradientTransform<T>& tr) {
  T g = clip_gradient(grad, tr.scale, tr.limit);
  T vel = c.rho * velocity + c.one_minus_rho * g * g;
  velocity = vel;
  T denominator = vel + c.epsilon;
  if constexpr (kCentered) {
    T a = c.rho * *avg + c.one_minus_rho * g;
    *avg = a;
    denominator = vel - a * a + c.epsilon;
  }
  T increment = c.lr * g / square_root(denominator);
  T wi = w - w * tr.decay;
  if constexpr (kMomentum) {
    increment = c.momentum * *mom + increment;
    *mom = increment;
  }
  w = wi - increment;
}

// Adagrad (Keras 3): acc += g^2; w -= lr g / sqrt(acc + epsilon), after the decay.
template <typename T>
GF_HOST_DEVICE inline void adagrad_element(T& w, T grad, T& acc, T lr, T epsilon, const GradientTransform<T>& tr) {
  T g = clip_gradient(grad, tr.scale, tr.limit);
  T a = acc + g * g;
  acc = a;
  w = w - w * tr.decay - lr * g / square_root(a + epsilon);
}

}  // namespace gradflow::optimizers::internal
