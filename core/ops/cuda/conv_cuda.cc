// CUDA conv2d and its two backprops through cuDNN. Three adaptations to cuDNN:
//  - Kernels are [kernel_h, kernel_w, in, out] (RSCK) here; cuDNN takes KRSC (its NHWC filter format) or
//    KCRS (NCHW), so the kernel is permuted on the way in and the filter gradient on the way out.
//  - f32/f16/bf16 run in NHWC, the tensors' own layout. cuDNN supports far fewer algorithms for f64 in
//    NHWC (PyTorch never uses it), so f64 tensors are copied to NCHW and back.
//  - TensorFlow's "same" padding can put one more row/column after than before; cuDNN pads
//    symmetrically, so the input gets that extra row/column of zeros explicitly (and the input gradient
//    loses it again).
// f32 is restricted to FMA math (no TF32), to agree with the CPU; f16/bf16 use tensor cores with f32
// accumulation; f64 takes whatever cuDNN offers (FP64 tensor cores lose nothing). The algorithm comes from cuDNN's
// heuristics, deterministic ones first.
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <climits>
#include <vector>

#include "core/ops/cuda/cuda_kernels.h"
#include "core/ops/cuda/handle_pool.h"
#include "core/ops/internal.h"
#include "core/tensor/cuda/fill.h"
#include "core/tensor/cuda/launch.h"

namespace gradflow::cuda {
namespace {

using IntList = std::vector<int64_t>;

void check_cudnn(cudnnStatus_t status, std::string_view what) {
  if (status != CUDNN_STATUS_SUCCESS) throw DeviceError(str_cat(what, ": cuDNN: ", cudnnGetErrorString(status)));
}

// A new cuDNN handle bound to the device's stream.
cudnnHandle_t create_cudnn(int device) {
  cudaStream_t s = stream(device);
  DeviceGuard guard(device);
  cudnnHandle_t h = nullptr;
  check_cudnn(cudnnCreate(&h), str_cat("cudnnCreate on cuda:", device));
  check_cudnn(cudnnSetStream(h, s), "cudnnSetStream");
  return h;
}

// Owning wrappers of cuDNN descriptors.
template <typename T, cudnnStatus_t (*kCreate)(T*), cudnnStatus_t (*kDestroy)(T)>
class Descriptor {
 public:
  Descriptor() { check_cudnn(kCreate(&d_), "creating a cuDNN descriptor"); }
  ~Descriptor() { kDestroy(d_); }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  T get() const { return d_; }

 private:
  T d_ = nullptr;
};
using TensorDesc = Descriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc =
    Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;

int to_int(int64_t v) {
  if (v > INT_MAX) throw ValueError(str_cat("conv2d: dimension ", v, " exceeds what cuDNN takes (", INT_MAX, ")"));
  return static_cast<int>(v);
}

// Padding and steps of one convolution; extra_h/extra_w (0 or 1) are the rows/columns of "same" padding
// after the input that symmetric padding (pad_top/pad_left on both sides) leaves out.
struct ConvGeometry {
  int64_t pad_top = 0, pad_left = 0, extra_h = 0, extra_w = 0;
  int64_t stride_h, stride_w, dil_h, dil_w;
};

// x_shape: the NHWC input; out_shape: the NHWC output; k_h x k_w: the kernel window.
ConvGeometry conv_geometry(const Shape& x_shape, const Shape& out_shape, int64_t k_h, int64_t k_w, const Attrs& a) {
  const IntList& strides = a.get<IntList>("strides");
  const IntList& dilation = a.get<IntList>("dilation");
  ConvGeometry g{.stride_h = strides[0], .stride_w = strides[1], .dil_h = dilation[0], .dil_w = dilation[1]};
  if (a.get<std::string>("padding") == "same") {
    int64_t total_h = std::max<int64_t>((out_shape[1] - 1) * g.stride_h + (k_h - 1) * g.dil_h + 1 - x_shape[1], 0);
    int64_t total_w = std::max<int64_t>((out_shape[2] - 1) * g.stride_w + (k_w - 1) * g.dil_w + 1 - x_shape[2], 0);
    g.pad_top = total_h / 2;
    g.pad_left = total_w / 2;
    g.extra_h = total_h - 2 * g.pad_top;
    g.extra_w = total_w - 2 * g.pad_left;
  }
  return g;
}

Shape padded_shape(Shape s, const ConvGeometry& g) {
  s[1] += g.extra_h;
  s[2] += g.extra_w;
  return s;
}

Tensor dense(const Tensor& t) { return t.is_contiguous() ? t : contiguous_kernel(t); }

// x with the extra rows/columns of zeros appended (x itself when there are none).
Tensor pad_extra(const Tensor& x, const ConvGeometry& g) {
  if (g.extra_h == 0 && g.extra_w == 0) return x;
  Tensor padded = empty(padded_shape(x.shape(), g), x.dtype(), x.device());
  fill(padded, 0.0);
  copy_into(make_view(padded, x.shape(), padded.strides(), 0), x);
  return padded;
}

// t's dimensions in the order `perm` (a view), and a contiguous copy of it.
Tensor permuted_view(const Tensor& t, std::array<int, 4> perm) {
  Shape shape;
  Strides strides;
  for (int p : perm) {
    shape.push_back(t.shape()[p]);
    strides.push_back(t.strides()[p]);
  }
  return make_view(t, shape, strides, t.offset());
}
Tensor permuted(const Tensor& t, std::array<int, 4> perm) { return contiguous_kernel(permuted_view(t, perm)); }

// How tensors are laid out for cuDNN: NHWC with KRSC filters, or NCHW with KCRS filters.
struct Layout {
  explicit Layout(DType dtype) : nchw(dtype == kF64) {}
  cudnnTensorFormat_t format() const { return nchw ? CUDNN_TENSOR_NCHW : CUDNN_TENSOR_NHWC; }
  // An NHWC tensor in cuDNN's layout (itself for NHWC).
  Tensor input(const Tensor& nhwc) const { return nchw ? permuted(nhwc, {0, 3, 1, 2}) : nhwc; }
  // A new tensor in cuDNN's layout for an NHWC shape, and an NHWC view of it.
  Tensor new_output(const Shape& nhwc, DType dtype, Device device) const {
    return empty(nchw ? Shape{nhwc[0], nhwc[3], nhwc[1], nhwc[2]} : nhwc, dtype, device);
  }
  Tensor nhwc_view(const Tensor& t) const { return nchw ? permuted_view(t, {0, 2, 3, 1}) : t; }
  // An RSCK kernel in cuDNN's filter layout, a new filter for an RSCK shape, and a filter back as RSCK.
  Tensor filter(const Tensor& rsck) const {
    return permuted(rsck, nchw ? std::array{3, 2, 0, 1} : std::array{3, 0, 1, 2});
  }
  Tensor new_filter(const Shape& k, DType dtype, Device device) const {
    return empty(nchw ? Shape{k[3], k[2], k[0], k[1]} : Shape{k[3], k[0], k[1], k[2]}, dtype, device);
  }
  Tensor rsck(const Tensor& w) const { return permuted(w, nchw ? std::array{2, 3, 1, 0} : std::array{1, 2, 3, 0}); }
  bool nchw;
};

cudnnDataType_t data_type(DType dtype) {
  switch (dtype) {
    case kF32: return CUDNN_DATA_FLOAT;
    case kF64: return CUDNN_DATA_DOUBLE;
    case kF16: return CUDNN_DATA_HALF;
    case kBF16: return CUDNN_DATA_BFLOAT16;
    default: throw_unsupported_dtype("conv2d", dtype);
  }
}

// The descriptors of one convolution, from NHWC shapes: x (the padded input), w (the filter, from its
// RSCK shape) and y (the output), in the layout's format.
struct ConvSetup {
  ConvSetup(std::string_view op, const Shape& x_padded, const Shape& kernel_hwio, const Shape& y_shape, DType dtype,
            const ConvGeometry& g)
      : fma_only(dtype == kF32), layout(dtype) {
    cudnnDataType_t t = data_type(dtype);
    cudnnTensorFormat_t format = layout.format();
    check_cudnn(cudnnSetTensor4dDescriptor(x.get(), format, t, to_int(x_padded[0]), to_int(x_padded[3]),
                                           to_int(x_padded[1]), to_int(x_padded[2])),
                str_cat(op, ": input ", shape_str(x_padded)));
    check_cudnn(cudnnSetTensor4dDescriptor(y.get(), format, t, to_int(y_shape[0]), to_int(y_shape[3]),
                                           to_int(y_shape[1]), to_int(y_shape[2])),
                str_cat(op, ": output ", shape_str(y_shape)));
    check_cudnn(cudnnSetFilter4dDescriptor(w.get(), t, format, to_int(kernel_hwio[3]), to_int(kernel_hwio[2]),
                                           to_int(kernel_hwio[0]), to_int(kernel_hwio[1])),
                str_cat(op, ": kernel ", shape_str(kernel_hwio)));
    check_cudnn(
        cudnnSetConvolution2dDescriptor(conv.get(), to_int(g.pad_top), to_int(g.pad_left), to_int(g.stride_h),
                                        to_int(g.stride_w), to_int(g.dil_h), to_int(g.dil_w), CUDNN_CROSS_CORRELATION,
                                        dtype == kF64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT),
        str_cat(op, ": convolution"));
    cudnnMathType_t math = fma_only ? CUDNN_FMA_MATH : is_half(dtype) ? CUDNN_TENSOR_OP_MATH : CUDNN_DEFAULT_MATH;
    check_cudnn(cudnnSetConvolutionMathType(conv.get(), math), op);
    int n, c, h, wd;  // cuDNN's output shape must be the op's
    check_cudnn(cudnnGetConvolution2dForwardOutputDim(conv.get(), x.get(), w.get(), &n, &c, &h, &wd), op);
    if (Shape{n, h, wd, c} != y_shape) {
      throw DeviceError(
          str_cat(op, ": cuDNN computes output [", n, ",", h, ",", wd, ",", c, "], expected ", shape_str(y_shape)));
    }
  }

  // The first algorithm that ran without error in cuDNN's heuristic ranking, deterministic ones first;
  // for f32 never a tensor-core (TF32) one. Other types take the algorithm's math type.
  template <typename Perf>
  auto pick(std::string_view op, const Perf* perf, int count) {
    for (bool need_deterministic : {true, false}) {
      for (int i = 0; i < count; ++i) {
        const Perf& p = perf[i];
        bool tensor_ops = p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
        if (p.status != CUDNN_STATUS_SUCCESS || (tensor_ops && fma_only)) continue;
        if (need_deterministic && p.determinism != CUDNN_DETERMINISTIC) continue;
        if (!fma_only) check_cudnn(cudnnSetConvolutionMathType(conv.get(), p.mathType), op);
        return p.algo;
      }
    }
    throw DeviceError(str_cat(op, ": cuDNN has no algorithm for this convolution"));
  }

  bool fma_only;  // f32: never TF32 tensor cores
  Layout layout;
  TensorDesc x, y;
  FilterDesc w;
  ConvDesc conv;
};

// alpha = 1, beta = 0 in the scaling type cuDNN expects for the data type.
struct Scaling {
  explicit Scaling(DType dtype) : is_double(dtype == kF64) {}
  const void* one() const { return is_double ? static_cast<const void*>(&one_d) : &one_f; }
  const void* zero() const { return is_double ? static_cast<const void*>(&zero_d) : &zero_f; }
  bool is_double;
  float one_f = 1, zero_f = 0;
  double one_d = 1, zero_d = 0;
};

Tensor workspace(size_t bytes, Device device) {
  return empty({static_cast<int64_t>(std::max<size_t>(bytes, 1))}, kU8, device);
}

}  // namespace

// y [batch, out_h, out_w, filters] = conv2d(x [batch, in_h, in_w, in], kernel [k_h, k_w, in, filters]).
TensorList conv2d_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  constexpr std::string_view kOp = "conv2d";
  Tensor out = empty(metas[0]);
  const Tensor& kernel = in[1];
  if (out.numel() == 0) return {out};
  if (kernel.numel() == 0) {  // no input channels: every output is an empty sum
    fill(out, 0.0);
    return {out};
  }
  ConvGeometry g = conv_geometry(in[0].shape(), out.shape(), kernel.dim(0), kernel.dim(1), attrs);
  Tensor x_padded = pad_extra(dense(in[0]), g);
  ConvSetup s(kOp, x_padded.shape(), kernel.shape(), out.shape(), out.dtype(), g);
  Tensor x = s.layout.input(x_padded);
  Tensor w = s.layout.filter(kernel);
  Tensor y = s.layout.nchw ? s.layout.new_output(out.shape(), out.dtype(), out.device()) : out;
  KernelScope scope(out.device());
  cudnnHandle_t h = pooled_handle<cudnnHandle_t, create_cudnn>(out.device().index);
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int count = 0;
  check_cudnn(cudnnGetConvolutionForwardAlgorithm_v7(h, s.x.get(), s.w.get(), s.conv.get(), s.y.get(),
                                                     CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf),
              kOp);
  cudnnConvolutionFwdAlgo_t algo = s.pick(kOp, perf, count);
  size_t bytes = 0;
  check_cudnn(cudnnGetConvolutionForwardWorkspaceSize(h, s.x.get(), s.w.get(), s.conv.get(), s.y.get(), algo, &bytes),
              kOp);
  Tensor ws = workspace(bytes, out.device());
  Scaling scale(out.dtype());
  check_cudnn(cudnnConvolutionForward(h, scale.one(), s.x.get(), x.raw_data(), s.w.get(), w.raw_data(), s.conv.get(),
                                      algo, ws.raw_data(), bytes, scale.zero(), s.y.get(), y.raw_data()),
              str_cat(kOp, " of ", shape_str(in[0].shape()), " with kernel ", shape_str(kernel.shape())));
  if (s.layout.nchw) copy_into(out, s.layout.nhwc_view(y));
  return {out};
}

// dx [input_shape] from grad_output [batch, out_h, out_w, filters] and kernel [k_h, k_w, in, filters].
TensorList conv2d_backprop_input_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  constexpr std::string_view kOp = "conv2d_backprop_input";
  const Tensor& kernel = in[1];
  Tensor dx = empty(metas[0]);
  if (dx.numel() == 0) return {dx};
  if (in[0].numel() == 0 || kernel.numel() == 0) {
    fill(dx, 0.0);
    return {dx};
  }
  ConvGeometry g = conv_geometry(dx.shape(), in[0].shape(), kernel.dim(0), kernel.dim(1), attrs);
  bool extra = g.extra_h != 0 || g.extra_w != 0;
  Shape dx_padded_shape = padded_shape(dx.shape(), g);
  ConvSetup s(kOp, dx_padded_shape, kernel.shape(), in[0].shape(), dx.dtype(), g);
  Tensor grad = s.layout.input(dense(in[0]));
  Tensor w = s.layout.filter(kernel);
  Tensor dx_padded = extra || s.layout.nchw ? s.layout.new_output(dx_padded_shape, dx.dtype(), dx.device()) : dx;
  KernelScope scope(dx.device());
  cudnnHandle_t h = pooled_handle<cudnnHandle_t, create_cudnn>(dx.device().index);
  cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
  int count = 0;
  check_cudnn(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, s.w.get(), s.y.get(), s.conv.get(), s.x.get(),
                                                          CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf),
              kOp);
  cudnnConvolutionBwdDataAlgo_t algo = s.pick(kOp, perf, count);
  size_t bytes = 0;
  check_cudnn(
      cudnnGetConvolutionBackwardDataWorkspaceSize(h, s.w.get(), s.y.get(), s.conv.get(), s.x.get(), algo, &bytes),
      kOp);
  Tensor ws = workspace(bytes, dx.device());
  Scaling scale(dx.dtype());
  check_cudnn(
      cudnnConvolutionBackwardData(h, scale.one(), s.w.get(), w.raw_data(), s.y.get(), grad.raw_data(), s.conv.get(),
                                   algo, ws.raw_data(), bytes, scale.zero(), s.x.get(), dx_padded.raw_data()),
      str_cat(kOp, " to ", shape_str(dx.shape()), " with kernel ", shape_str(kernel.shape())));
  if (dx_padded.raw_data() != dx.raw_data()) {  // back to NHWC, without the extra rows and columns
    Tensor view = s.layout.nhwc_view(dx_padded);
    copy_into(dx, make_view(view, dx.shape(), view.strides(), view.offset()));
  }
  return {dx};
}

// dkernel [filter_shape] from x [batch, in_h, in_w, in] and grad_output [batch, out_h, out_w, filters].
TensorList conv2d_backprop_filter_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  constexpr std::string_view kOp = "conv2d_backprop_filter";
  const TensorMeta& meta = metas[0];
  const Shape& k = meta.shape;
  if (numel(k) == 0 || in[0].numel() == 0 || in[1].numel() == 0) {
    Tensor dk = empty(meta);
    fill(dk, 0.0);
    return {dk};
  }
  ConvGeometry g = conv_geometry(in[0].shape(), in[1].shape(), k[0], k[1], attrs);
  Tensor x_padded = pad_extra(dense(in[0]), g);
  ConvSetup s(kOp, x_padded.shape(), k, in[1].shape(), meta.dtype, g);
  Tensor x = s.layout.input(x_padded);
  Tensor grad = s.layout.input(dense(in[1]));
  Tensor dw = s.layout.new_filter(k, meta.dtype, meta.device);
  KernelScope scope(meta.device);
  cudnnHandle_t h = pooled_handle<cudnnHandle_t, create_cudnn>(meta.device.index);
  cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
  int count = 0;
  check_cudnn(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, s.x.get(), s.y.get(), s.conv.get(), s.w.get(),
                                                            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count, perf),
              kOp);
  cudnnConvolutionBwdFilterAlgo_t algo = s.pick(kOp, perf, count);
  size_t bytes = 0;
  check_cudnn(
      cudnnGetConvolutionBackwardFilterWorkspaceSize(h, s.x.get(), s.y.get(), s.conv.get(), s.w.get(), algo, &bytes),
      kOp);
  Tensor ws = workspace(bytes, meta.device);
  Scaling scale(meta.dtype);
  check_cudnn(
      cudnnConvolutionBackwardFilter(h, scale.one(), s.x.get(), x.raw_data(), s.y.get(), grad.raw_data(), s.conv.get(),
                                     algo, ws.raw_data(), bytes, scale.zero(), s.w.get(), dw.raw_data()),
      str_cat(kOp, " of ", shape_str(in[0].shape()), " to ", shape_str(k)));
  return {s.layout.rsck(dw)};
}

}  // namespace gradflow::cuda
