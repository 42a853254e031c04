// CPU kernels for conv2d and pooling in NHWC (f32, f64; f16/bf16 arrive as f32).
//
// Convolution is im2col + one BLAS GEMM per chunk of the batch: each output pixel's receptive field
// becomes a row of `col` ([batch*out_h*out_w, kernel_h*kernel_w*in_channels], zeros where the window
// hangs over the padding), and the kernel [kernel_h, kernel_w, in_channels, filters] read as a
// [patch, filters] matrix multiplies it. The backprops are the two transposed products, with col2im
// scattering patch gradients back onto the input. A 1x1 kernel with stride 1 needs no col: x already
// is it. Gathering and scattering use OpenMP over the batch; the GEMMs (cpu::gemm, multithreaded
// itself) run outside parallel regions. Pooling kernels are plain loops, OpenMP over the batch.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/ops/cpu/gemm.h"
#include "core/ops/internal.h"

namespace gradflow {
namespace {

// Elements of one im2col buffer; the batch is processed in chunks that fit.
constexpr int64_t kMaxColElements = int64_t{1} << 23;
// Below this many elements of work, loops stay on one thread.
constexpr int64_t kParallelWork = int64_t{1} << 15;

Tensor dense(const Tensor& t) { return t.is_contiguous() ? t : contiguous_kernel(t); }

// Everything the loops need about one conv or pooling window sweep. x is [batch, in_h, in_w, channels],
// the output [batch, out_h, out_w, ...], the window k_h x k_w.
struct Geometry {
  int64_t batch, in_h, in_w, channels;
  int64_t out_h, out_w;
  int64_t k_h, k_w;
  int64_t stride_h, stride_w, dil_h, dil_w;
  int64_t pad_top, pad_left;

  int64_t rows() const { return out_h * out_w; }             // output pixels per image
  int64_t patch() const { return k_h * k_w * channels; }     // one im2col row
  int64_t image() const { return in_h * in_w * channels; }   // elements of one input image
  bool pointwise() const { return k_h == 1 && k_w == 1 && stride_h == 1 && stride_w == 1; }
};

// Padding before the first element, TensorFlow's rule (core/ops/conv_ops.cc shapes the output with the
// same rule): "same" pads max((out-1)*stride + (k-1)*dilation + 1 - in, 0) in total, half before.
int64_t pad_before(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t dilation, bool same) {
  if (!same) return 0;
  return std::max<int64_t>((out - 1) * stride + (k - 1) * dilation + 1 - in, 0) / 2;
}

// x_shape: the NHWC input; out_shape: the NHWC output; the window size and attrs (strides, padding and,
// for convolutions, dilation).
Geometry make_geometry(const Shape& x_shape, const Shape& out_shape, int64_t k_h, int64_t k_w, const Attrs& a) {
  const auto& strides = a.get<std::vector<int64_t>>("strides");
  std::vector<int64_t> dilation = a.get_or<std::vector<int64_t>>("dilation", {1, 1});
  bool same = a.get<std::string>("padding") == "same";
  Geometry g{x_shape[0], x_shape[1], x_shape[2], x_shape[3], out_shape[1], out_shape[2], k_h, k_w,
             strides[0], strides[1], dilation[0], dilation[1], 0, 0};
  g.pad_top = pad_before(g.in_h, g.out_h, k_h, g.stride_h, g.dil_h, same);
  g.pad_left = pad_before(g.in_w, g.out_w, k_w, g.stride_w, g.dil_w, same);
  return g;
}

using cpu::gemm;

// Images per im2col chunk (at least one).
int64_t chunk_images(const Geometry& g) {
  int64_t per_image = std::max<int64_t>(g.rows() * g.patch(), 1);
  return std::clamp<int64_t>(kMaxColElements / per_image, 1, std::max<int64_t>(g.batch, 1));
}

// col rows for images [b0, b0 + nb): row (b, oh, ow) holds x's window at that output pixel, laid out
// [k_h, k_w, channels] like the kernel, zeros outside the image.
template <typename T>
void im2col(const T* x, T* col, const Geometry& g, int64_t b0, int64_t nb) {
  const int64_t c = g.channels, p = g.patch();
#pragma omp parallel for collapse(2) if (nb * g.rows() * p > kParallelWork)
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      const T* xb = x + (b0 + b) * g.image();
      T* row = col + (b * g.out_h + oh) * g.out_w * p;
      for (int64_t ow = 0; ow < g.out_w; ++ow, row += p) {
        for (int64_t i = 0; i < g.k_h; ++i) {
          int64_t y = oh * g.stride_h - g.pad_top + i * g.dil_h;
          for (int64_t j = 0; j < g.k_w; ++j) {
            int64_t xx = ow * g.stride_w - g.pad_left + j * g.dil_w;
            T* dst = row + (i * g.k_w + j) * c;
            if (y < 0 || y >= g.in_h || xx < 0 || xx >= g.in_w) {
              std::fill_n(dst, c, T(0));
            } else {
              std::memcpy(dst, xb + (y * g.in_w + xx) * c, c * sizeof(T));
            }
          }
        }
      }
    }
  }
}

// The adjoint of im2col: adds each col row's entries back onto the input pixels they came from.
// Windows of one image overlap, so the parallel loop is over images only.
template <typename T>
void col2im(const T* col, T* dx, const Geometry& g, int64_t b0, int64_t nb) {
  const int64_t c = g.channels, p = g.patch();
#pragma omp parallel for if (nb * g.rows() * p > kParallelWork)
  for (int64_t b = 0; b < nb; ++b) {
    T* dxb = dx + (b0 + b) * g.image();
    const T* row = col + b * g.rows() * p;
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      for (int64_t ow = 0; ow < g.out_w; ++ow, row += p) {
        for (int64_t i = 0; i < g.k_h; ++i) {
          int64_t y = oh * g.stride_h - g.pad_top + i * g.dil_h;
          if (y < 0 || y >= g.in_h) continue;
          for (int64_t j = 0; j < g.k_w; ++j) {
            int64_t xx = ow * g.stride_w - g.pad_left + j * g.dil_w;
            if (xx < 0 || xx >= g.in_w) continue;
            const T* src = row + (i * g.k_w + j) * c;
            T* dst = dxb + (y * g.in_w + xx) * c;
            for (int64_t ch = 0; ch < c; ++ch) dst[ch] += src[ch];
          }
        }
      }
    }
  }
}

// y [batch, out_h, out_w, filters] = conv2d(x [batch, in_h, in_w, channels], kernel [k_h, k_w, channels,
// filters]).
TensorList conv2d_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor x = dense(in[0]), kernel = dense(in[1]);
  Tensor out = empty(metas[0]);
  Geometry g = make_geometry(x.shape(), out.shape(), kernel.dim(0), kernel.dim(1), attrs);
  const int64_t f = kernel.dim(3), p = g.patch(), rows = g.rows();
  visit_float("conv2d", out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x.raw_data());
    const T* pk = static_cast<const T*>(kernel.raw_data());
    T* po = static_cast<T*>(out.raw_data());
    if (g.pointwise()) {
      gemm(false, false, g.batch * rows, f, p, px, p, pk, f, T(0), po, f);
      return;
    }
    int64_t chunk = chunk_images(g);
    std::vector<T> col(chunk * rows * p);
    for (int64_t b0 = 0; b0 < g.batch; b0 += chunk) {
      int64_t nb = std::min(chunk, g.batch - b0);
      im2col(px, col.data(), g, b0, nb);
      gemm(false, false, nb * rows, f, p, col.data(), p, pk, f, T(0), po + b0 * rows * f, f);
    }
  });
  return {out};
}

// dx [input_shape] from grad_output [batch, out_h, out_w, filters] and kernel: col = grad_output x
// kernel^T, then col2im.
TensorList conv2d_backprop_input_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor grad = dense(in[0]), kernel = dense(in[1]);
  Tensor dx = empty(metas[0]);
  Geometry g = make_geometry(dx.shape(), grad.shape(), kernel.dim(0), kernel.dim(1), attrs);
  const int64_t f = kernel.dim(3), p = g.patch(), rows = g.rows();
  visit_float("conv2d_backprop_input", dx.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = static_cast<const T*>(grad.raw_data());
    const T* pk = static_cast<const T*>(kernel.raw_data());
    T* pdx = static_cast<T*>(dx.raw_data());
    if (g.pointwise()) {
      gemm(false, true, g.batch * rows, p, f, pg, f, pk, f, T(0), pdx, p);
      return;
    }
    std::fill_n(pdx, dx.numel(), T(0));
    int64_t chunk = chunk_images(g);
    std::vector<T> col(chunk * rows * p);
    for (int64_t b0 = 0; b0 < g.batch; b0 += chunk) {
      int64_t nb = std::min(chunk, g.batch - b0);
      gemm(false, true, nb * rows, p, f, pg + b0 * rows * f, f, pk, f, T(0), col.data(), p);
      col2im(col.data(), pdx, g, b0, nb);
    }
  });
  return {dx};
}

// dkernel [filter_shape] = col(x)^T x grad_output, summed over the batch.
TensorList conv2d_backprop_filter_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor x = dense(in[0]), grad = dense(in[1]);
  Tensor dk = empty(metas[0]);
  Geometry g = make_geometry(x.shape(), grad.shape(), dk.dim(0), dk.dim(1), attrs);
  const int64_t f = dk.dim(3), p = g.patch(), rows = g.rows();
  visit_float("conv2d_backprop_filter", dk.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x.raw_data());
    const T* pg = static_cast<const T*>(grad.raw_data());
    T* pdk = static_cast<T*>(dk.raw_data());
    std::fill_n(pdk, dk.numel(), T(0));
    if (g.pointwise()) {
      gemm(true, false, p, f, g.batch * rows, px, p, pg, f, T(0), pdk, f);
      return;
    }
    int64_t chunk = chunk_images(g);
    std::vector<T> col(chunk * rows * p);
    for (int64_t b0 = 0; b0 < g.batch; b0 += chunk) {
      int64_t nb = std::min(chunk, g.batch - b0);
      im2col(px, col.data(), g, b0, nb);
      gemm(true, false, p, f, nb * rows, col.data(), p, pg + b0 * rows * f, f, T(1), pdk, f);
    }
  });
  return {dk};
}

// ---- Pooling ----

// The in-bounds part [y0, y1) x [x0, x1) of the pooling window at output pixel (oh, ow).
struct Window {
  int64_t y0, y1, x0, x1;
  int64_t count() const { return (y1 - y0) * (x1 - x0); }
};

Window window_at(const Geometry& g, int64_t oh, int64_t ow) {
  int64_t ys = oh * g.stride_h - g.pad_top, xs = ow * g.stride_w - g.pad_left;
  return {std::max<int64_t>(ys, 0), std::min(ys + g.k_h, g.in_h), std::max<int64_t>(xs, 0),
          std::min(xs + g.k_w, g.in_w)};
}

Geometry pool_geometry(const Shape& x_shape, const Shape& out_shape, const Attrs& a) {
  const auto& pool = a.get<std::vector<int64_t>>("pool_size");
  return make_geometry(x_shape, out_shape, pool[0], pool[1], a);
}

// Max pooling's order: larger wins, and a NaN wins over any number (so NaNs propagate).
template <typename T>
bool beats(T v, T best) {
  return v > best || (std::isnan(v) && !std::isnan(best));
}

// For each channel, the in-image pixel index (y * in_w + x) of the window's first maximum; `best` is
// scratch of `channels` elements.
template <typename T>
void window_argmax(const T* xb, const Geometry& g, const Window& w, int64_t* arg, T* best) {
  const int64_t c = g.channels;
  std::fill_n(best, c, -std::numeric_limits<T>::infinity());
  std::fill_n(arg, c, w.y0 * g.in_w + w.x0);
  for (int64_t y = w.y0; y < w.y1; ++y) {
    for (int64_t xx = w.x0; xx < w.x1; ++xx) {
      const T* px = xb + (y * g.in_w + xx) * c;
      for (int64_t ch = 0; ch < c; ++ch) {
        if (beats(px[ch], best[ch])) {
          best[ch] = px[ch];
          arg[ch] = y * g.in_w + xx;
        }
      }
    }
  }
}

// Runs body(image b, window, offset of the output pixel's first channel) for every output pixel, OpenMP
// over images (`work` elements in all decides whether to go parallel).
template <typename Body>
void for_each_pool_pixel(const Geometry& g, int64_t work, Body body) {
#pragma omp parallel for if (work > kParallelWork)
  for (int64_t b = 0; b < g.batch; ++b) {
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        body(b, window_at(g, oh, ow), ((b * g.out_h + oh) * g.out_w + ow) * g.channels);
      }
    }
  }
}

TensorList max_pool2d_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor x = dense(in[0]);
  Tensor out = empty(metas[0]);
  Geometry g = pool_geometry(x.shape(), out.shape(), attrs);
  visit_float("max_pool2d", out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x.raw_data());
    T* po = static_cast<T*>(out.raw_data());
    for_each_pool_pixel(g, x.numel(), [&](int64_t b, const Window& w, int64_t o) {
      T* dst = po + o;
      std::fill_n(dst, g.channels, -std::numeric_limits<T>::infinity());
      for (int64_t y = w.y0; y < w.y1; ++y) {
        for (int64_t xx = w.x0; xx < w.x1; ++xx) {
          const T* src = px + b * g.image() + (y * g.in_w + xx) * g.channels;
          for (int64_t ch = 0; ch < g.channels; ++ch) {
            if (beats(src[ch], dst[ch])) dst[ch] = src[ch];
          }
        }
      }
    });
  });
  return {out};
}

// max_pool2d_grad (to_input): dx[argmax] += grad_output, dx shaped like x.
// max_pool2d_grad_grad (!to_input): out = grad_grad_input[argmax], shaped like the pooled output.
template <bool kToInput>
TensorList max_pool_grad_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor x = dense(in[0]), grad = dense(in[1]);
  Tensor out = empty(metas[0]);
  Geometry g = pool_geometry(x.shape(), kToInput ? grad.shape() : out.shape(), attrs);
  visit_float(kToInput ? "max_pool2d_grad" : "max_pool2d_grad_grad", out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x.raw_data());
    const T* pg = static_cast<const T*>(grad.raw_data());
    T* po = static_cast<T*>(out.raw_data());
    if (kToInput) std::fill_n(po, out.numel(), T(0));
    const int64_t c = g.channels;
#pragma omp parallel if (x.numel() > kParallelWork)
    {
      std::vector<int64_t> arg(c);
      std::vector<T> best(c);
#pragma omp for
      for (int64_t b = 0; b < g.batch; ++b) {
        for (int64_t oh = 0; oh < g.out_h; ++oh) {
          for (int64_t ow = 0; ow < g.out_w; ++ow) {
            window_argmax(px + b * g.image(), g, window_at(g, oh, ow), arg.data(), best.data());
            int64_t o = ((b * g.out_h + oh) * g.out_w + ow) * c;
            for (int64_t ch = 0; ch < c; ++ch) {
              int64_t i = b * g.image() + arg[ch] * c + ch;
              if constexpr (kToInput) {
                po[i] += pg[o + ch];
              } else {
                po[o + ch] = pg[i];
              }
            }
          }
        }
      }
    }
  });
  return {out};
}

// Average over the in-image part of each window ("same" padding does not count the padding).
TensorList avg_pool2d_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor x = dense(in[0]);
  Tensor out = empty(metas[0]);
  Geometry g = pool_geometry(x.shape(), out.shape(), attrs);
  visit_float("avg_pool2d", out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x.raw_data());
    T* po = static_cast<T*>(out.raw_data());
    for_each_pool_pixel(g, x.numel(), [&](int64_t b, const Window& w, int64_t o) {
      T* dst = po + o;
      std::fill_n(dst, g.channels, T(0));
      for (int64_t y = w.y0; y < w.y1; ++y) {
        for (int64_t xx = w.x0; xx < w.x1; ++xx) {
          const T* src = px + b * g.image() + (y * g.in_w + xx) * g.channels;
          for (int64_t ch = 0; ch < g.channels; ++ch) dst[ch] += src[ch];
        }
      }
      T scale = T(1) / static_cast<T>(w.count());
      for (int64_t ch = 0; ch < g.channels; ++ch) dst[ch] *= scale;
    });
  });
  return {out};
}

// dx [input_shape]: each output's gradient spread evenly over its window's in-image pixels.
TensorList avg_pool2d_grad_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor grad = dense(in[0]);
  Tensor dx = empty(metas[0]);
  Geometry g = pool_geometry(dx.shape(), grad.shape(), attrs);
  visit_float("avg_pool2d_grad", dx.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = static_cast<const T*>(grad.raw_data());
    T* pdx = static_cast<T*>(dx.raw_data());
    std::fill_n(pdx, dx.numel(), T(0));
    for_each_pool_pixel(g, dx.numel(), [&](int64_t b, const Window& w, int64_t o) {
      T scale = T(1) / static_cast<T>(w.count());
      for (int64_t y = w.y0; y < w.y1; ++y) {
        for (int64_t xx = w.x0; xx < w.x1; ++xx) {
          T* dst = pdx + b * g.image() + (y * g.in_w + xx) * g.channels;
          for (int64_t ch = 0; ch < g.channels; ++ch) dst[ch] += pg[o + ch] * scale;
        }
      }
    });
  });
  return {dx};
}

}  // namespace

void register_conv_cpu_kernels(OpRegistry& r) {
  r.set_kernel("conv2d", DeviceType::kCPU, conv2d_kernel);
  r.set_kernel("conv2d_backprop_input", DeviceType::kCPU, conv2d_backprop_input_kernel);
  r.set_kernel("conv2d_backprop_filter", DeviceType::kCPU, conv2d_backprop_filter_kernel);
  r.set_kernel("max_pool2d", DeviceType::kCPU, max_pool2d_kernel);
  r.set_kernel("max_pool2d_grad", DeviceType::kCPU, max_pool_grad_kernel<true>);
  r.set_kernel("max_pool2d_grad_grad", DeviceType::kCPU, max_pool_grad_kernel<false>);
  r.set_kernel("avg_pool2d", DeviceType::kCPU, avg_pool2d_kernel);
  r.set_kernel("avg_pool2d_grad", DeviceType::kCPU, avg_pool2d_grad_kernel);
}

}  // namespace gradflow
