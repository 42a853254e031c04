// Pooling kernels, one thread per output element (forward, max_pool2d_grad_grad) or per input element
// (the gradients: each gathers from the windows that contain it, in the CPU's order, so no atomics are
// needed and sums are deterministic). Kernels first, then the launchers.
#include "core/ops/cuda/pool_kernels.h"
#include "core/tensor/cuda/kernel_common.cuh"

namespace gradflow::cuda {
namespace {

// The in-image part [y0, y1) x [x0, x1) of the window at output pixel (oh, ow).
struct Window {
  int64_t y0, y1, x0, x1;
};

__host__ __device__ __forceinline__ Window window_at(const PoolGeometry& g, int64_t oh, int64_t ow) {
  int64_t ys = oh * g.stride_h - g.pad_top, xs = ow * g.stride_w - g.pad_left;
  return {ys > 0 ? ys : 0, ys + g.k_h < g.in_h ? ys + g.k_h : g.in_h, xs > 0 ? xs : 0,
          xs + g.k_w < g.in_w ? xs + g.k_w : g.in_w};
}

// The output rows (or columns) whose windows contain input row y: [lo, hi].
__host__ __device__ __forceinline__ void covering(int64_t y, int64_t k, int64_t stride, int64_t pad, int64_t out,
                                                  int64_t* lo, int64_t* hi) {
  int64_t t = y + pad - k;  // a window starting at or before t ends before y
  *lo = t < 0 ? 0 : t / stride + 1;
  int64_t last = (y + pad) / stride;
  *hi = last < out - 1 ? last : out - 1;
}

// Larger wins, and a NaN wins over any number.
template <typename C>
__device__ __forceinline__ bool beats(C v, C best) {
  return v > best || (is_nan(v) && !is_nan(best));
}

// x points at channel c of image b; returns the in-image pixel index (y * in_w + x) of the window's
// first maximum.
template <typename T>
__device__ int64_t window_argmax(const T* x, const PoolGeometry& g, const Window& w) {
  using C = Compute<T>;
  C best = -infinity<C>();
  int64_t arg = w.y0 * g.in_w + w.x0;
  for (int64_t y = w.y0; y < w.y1; ++y) {
    for (int64_t xx = w.x0; xx < w.x1; ++xx) {
      C v = load(x[(y * g.in_w + xx) * g.channels]);
      if (beats(v, best)) {
        best = v;
        arg = y * g.in_w + xx;
      }
    }
  }
  return arg;
}

// Output element t of [batch, out_h, out_w, channels] as (b, oh, ow, c).
struct OutIndex {
  int64_t b, oh, ow, c;
};
__device__ __forceinline__ OutIndex out_index(const PoolGeometry& g, int64_t t) {
  OutIndex i;
  i.c = t % g.channels;
  t /= g.channels;
  i.ow = t % g.out_w;
  t /= g.out_w;
  i.oh = t % g.out_h;
  i.b = t / g.out_h;
  return i;
}

template <typename T, bool kMax>
__global__ void pool_kernel(T* out, const T* x, PoolGeometry g, int64_t n) {
  using C = Compute<T>;
  GF_GRID_STRIDE_LOOP(t, n) {
    OutIndex o = out_index(g, t);
    Window w = window_at(g, o.oh, o.ow);
    const T* xc = x + o.b * g.in_h * g.in_w * g.channels + o.c;
    C acc = kMax ? -infinity<C>() : C(0);
    for (int64_t y = w.y0; y < w.y1; ++y) {
      for (int64_t xx = w.x0; xx < w.x1; ++xx) {
        C v = load(xc[(y * g.in_w + xx) * g.channels]);
        if constexpr (kMax) {
          if (beats(v, acc)) acc = v;
        } else {
          acc += v;
        }
      }
    }
    if constexpr (!kMax) acc *= C(1) / static_cast<C>((w.y1 - w.y0) * (w.x1 - w.x0));
    out[t] = store<T>(acc);
  }
}

template <typename T>
__global__ void max_pool_grad_grad_kernel(T* out, const T* x, const T* grad_input, PoolGeometry g, int64_t n) {
  GF_GRID_STRIDE_LOOP(t, n) {
    OutIndex o = out_index(g, t);
    int64_t image = o.b * g.in_h * g.in_w * g.channels;
    int64_t arg = window_argmax(x + image + o.c, g, window_at(g, o.oh, o.ow));
    out[t] = grad_input[image + arg * g.channels + o.c];
  }
}

// One thread per input element (b, y, x, c), summing over the windows that contain it.
template <typename T, bool kMax>
__global__ void pool_grad_kernel(T* dx, const T* x, const T* grad, PoolGeometry g, int64_t n) {
  using C = Compute<T>;
  GF_GRID_STRIDE_LOOP(t, n) {
    int64_t c = t % g.channels, r = t / g.channels;
    int64_t xx = r % g.in_w;
    r /= g.in_w;
    int64_t y = r % g.in_h, b = r / g.in_h;
    int64_t oh_lo, oh_hi, ow_lo, ow_hi;
    covering(y, g.k_h, g.stride_h, g.pad_top, g.out_h, &oh_lo, &oh_hi);
    covering(xx, g.k_w, g.stride_w, g.pad_left, g.out_w, &ow_lo, &ow_hi);
    const T* grad_b = grad + b * g.out_h * g.out_w * g.channels + c;
    C acc = C(0);
    for (int64_t oh = oh_lo; oh <= oh_hi; ++oh) {
      for (int64_t ow = ow_lo; ow <= ow_hi; ++ow) {
        Window w = window_at(g, oh, ow);
        C gv = load(grad_b[(oh * g.out_w + ow) * g.channels]);
        if constexpr (kMax) {
          const T* xc = x + b * g.in_h * g.in_w * g.channels + c;
          if (window_argmax(xc, g, w) == y * g.in_w + xx) acc += gv;
        } else {
          acc += gv * (C(1) / static_cast<C>((w.y1 - w.y0) * (w.x1 - w.x0)));
        }
      }
    }
    dx[t] = store<T>(acc);
  }
}

int64_t input_elements(const PoolGeometry& g) { return g.batch * g.in_h * g.in_w * g.channels; }
int64_t output_elements(const PoolGeometry& g) { return g.batch * g.out_h * g.out_w * g.channels; }

template <bool kMax>
cudaError_t pool(cudaStream_t stream, ScalarType type, void* out, const void* x, const PoolGeometry& g) {
  int64_t n = output_elements(g);
  if (n == 0) return cudaSuccess;
  return visit_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    pool_kernel<T, kMax><<<grid_for(n), kBlock, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(x), g, n);
    return cudaGetLastError();
  });
}

template <bool kMax>
cudaError_t pool_grad(cudaStream_t stream, ScalarType type, void* dx, const void* x, const void* grad,
                      const PoolGeometry& g) {
  int64_t n = input_elements(g);
  if (n == 0) return cudaSuccess;
  return visit_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    pool_grad_kernel<T, kMax><<<grid_for(n), kBlock, 0, stream>>>(static_cast<T*>(dx), static_cast<const T*>(x),
                                                                  static_cast<const T*>(grad), g, n);
    return cudaGetLastError();
  });
}

}  // namespace

cudaError_t launch_max_pool(cudaStream_t stream, ScalarType type, void* out, const void* x, const PoolGeometry& g) {
  return pool<true>(stream, type, out, x, g);
}

cudaError_t launch_avg_pool(cudaStream_t stream, ScalarType type, void* out, const void* x, const PoolGeometry& g) {
  return pool<false>(stream, type, out, x, g);
}

cudaError_t launch_max_pool_grad(cudaStream_t stream, ScalarType type, void* dx, const void* x, const void* grad,
                                 const PoolGeometry& g) {
  return pool_grad<true>(stream, type, dx, x, grad, g);
}

cudaError_t launch_avg_pool_grad(cudaStream_t stream, ScalarType type, void* dx, const void* grad,
                                 const PoolGeometry& g) {
  return pool_grad<false>(stream, type, dx, nullptr, grad, g);
}

cudaError_t launch_max_pool_grad_grad(cudaStream_t stream, ScalarType type, void* out, const void* x,
                                      const void* grad_input, const PoolGeometry& g) {
  int64_t n = output_elements(g);
  if (n == 0) return cudaSuccess;
  return visit_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_pool_grad_grad_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(x),
                                                                     static_cast<const T*>(grad_input), g, n);
    return cudaGetLastError();
  });
}

}  // namespace gradflow::cuda
