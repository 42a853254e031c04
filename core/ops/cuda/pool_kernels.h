// Launchers of pool_kernels.cu: 2-D max and average pooling in NHWC and their gradients, with the CPU
// kernels' semantics (TensorFlow padding, the first maximum of a window wins and NaN beats any number,
// "same" averages count only in-image elements). All tensors are contiguous; floating types only.
#pragma once

#include "core/tensor/cuda/kernel_types.h"

namespace gradflow::cuda {

// x is [batch, in_h, in_w, channels], the pooled output [batch, out_h, out_w, channels]; the window
// at output (oh, ow) starts at (oh * stride_h - pad_top, ow * stride_w - pad_left).
struct PoolGeometry {
  int64_t batch, in_h, in_w, channels;
  int64_t out_h, out_w;
  int64_t k_h, k_w;
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_left;
};

// out = max over each window.
cudaError_t launch_max_pool(cudaStream_t stream, ScalarType type, void* out, const void* x, const PoolGeometry& g);
// out = mean over the in-image part of each window.
cudaError_t launch_avg_pool(cudaStream_t stream, ScalarType type, void* out, const void* x, const PoolGeometry& g);
// dx (like x) = the sum of grad (like the output) over the windows whose maximum is at that element.
cudaError_t launch_max_pool_grad(cudaStream_t stream, ScalarType type, void* dx, const void* x, const void* grad,
                                 const PoolGeometry& g);
// out (like the output) = grad_input (like x) at each window's maximum.
cudaError_t launch_max_pool_grad_grad(cudaStream_t stream, ScalarType type, void* out, const void* x,
                                      const void* grad_input, const PoolGeometry& g);
// dx (like x) = each window's gradient spread evenly over its in-image elements.
cudaError_t launch_avg_pool_grad(cudaStream_t stream, ScalarType type, void* dx, const void* grad,
                                 const PoolGeometry& g);

}  // namespace gradflow::cuda
