// The public op API: every function runs eagerly on its inputs' device and is recorded by active
// GradientTapes. Binary ops broadcast as NumPy does; operands must share dtype and device (convert with
// .to()); violations throw ShapeError / DTypeError / DeviceError naming the op and the values.
//
//   Tensor logits = add(matmul(x, w), b);
//   Tensor loss = mean(sparse_softmax_cross_entropy_with_logits(labels, logits));
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/tensor/creation.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"

namespace gradflow {

using Axes = std::vector<int64_t>;  // empty: every axis

// ---- Elementwise binary (broadcasting) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
// Comparisons and logic produce bool tensors and have no gradient.
Tensor equal(const Tensor& a, const Tensor& b);
Tensor not_equal(const Tensor& a, const Tensor& b);
Tensor less(const Tensor& a, const Tensor& b);
Tensor less_equal(const Tensor& a, const Tensor& b);
Tensor greater(const Tensor& a, const Tensor& b);
Tensor greater_equal(const Tensor& a, const Tensor& b);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& a);

// ---- Elementwise unary ----
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor square(const Tensor& x);
Tensor sign(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, bool approximate = false);  // exact (erf) by default, as Keras
Tensor softplus(const Tensor& x);
Tensor erf(const Tensor& x);

// cond ? a : b, broadcasting all three; cond is bool.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// Limits x to [lo, hi]; the gradient passes where lo <= x <= hi.
Tensor clip(const Tensor& x, double lo, double hi);

// ---- Reductions over `axes` (empty: all) ----
Tensor sum(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor mean(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor max(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor min(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor logsumexp(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
Tensor argmax(const Tensor& x, int64_t axis = -1, bool keepdims = false);  // i64 indices
// Sums a broadcast result back down to `shape` (the gradient of broadcasting).
Tensor sum_to(const Tensor& x, const Shape& shape);
Tensor broadcast_to(const Tensor& x, const Shape& shape);

// ---- Linear algebra ----
// [..., m, k] x [..., k, n] -> [..., m, n]; batch dimensions broadcast; 1-D operands as in NumPy.
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);

// ---- Neural-network ops ----
Tensor softmax(const Tensor& logits, int64_t axis = -1);
Tensor log_softmax(const Tensor& logits, int64_t axis = -1);
// Per-example cross-entropy: labels are integer class ids [batch], logits [batch, classes].
Tensor sparse_softmax_cross_entropy_with_logits(const Tensor& labels, const Tensor& logits);
// Per-example cross-entropy with a probability distribution over the last axis as labels.
Tensor softmax_cross_entropy_with_logits(const Tensor& labels, const Tensor& logits);
// Zeroes each element with probability `rate` and scales the rest by 1/(1-rate); draws from the Philox
// generator (the global one unless a seed is given).
Tensor dropout(const Tensor& x, double rate, std::optional<uint64_t> seed = std::nullopt);
// Normalizes over the last axis: (x - mean) / sqrt(var + epsilon) * gamma + beta.
Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double epsilon = 1e-3);
struct BatchNormResult {
  Tensor y, batch_mean, batch_variance;
};
// Training-mode batch norm over every axis but the last (channels), with biased batch statistics.
BatchNormResult batch_norm_training(const Tensor& x, const Tensor& gamma, const Tensor& beta, double epsilon = 1e-3);
// Inference-mode batch norm with given statistics (shape [channels]).
Tensor batch_norm_inference(const Tensor& x, const Tensor& mean, const Tensor& variance, const Tensor& gamma,
                            const Tensor& beta, double epsilon = 1e-3);

// ---- Convolution and pooling (channels last, as Keras: x is [batch, height, width, channels]) ----
enum class Padding { kValid, kSame };
struct Conv2DOptions {
  std::array<int64_t, 2> strides{1, 1};
  Padding padding = Padding::kValid;
  std::array<int64_t, 2> dilation{1, 1};
};
// kernel is [kernel_h, kernel_w, in_channels, filters] -> [batch, out_h, out_w, filters].
Tensor conv2d(const Tensor& x, const Tensor& kernel, const Conv2DOptions& options = {});
struct Pool2DOptions {
  std::array<int64_t, 2> pool_size{2, 2};
  std::array<int64_t, 2> strides{2, 2};
  Padding padding = Padding::kValid;
};
Tensor max_pool2d(const Tensor& x, const Pool2DOptions& options = {});
// With kSame padding the average counts only the input elements inside each window.
Tensor avg_pool2d(const Tensor& x, const Pool2DOptions& options = {});

// ---- Indexing and joining ----
Tensor concat(const std::vector<Tensor>& tensors, int64_t axis = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t axis = 0);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis = 0);
std::vector<Tensor> split(const Tensor& x, int64_t num_splits, int64_t axis = 0);
// Rows of params along `axis` picked by integer indices: out shape = params[:axis] + indices + params[axis+1:].
Tensor gather(const Tensor& params, const Tensor& indices, int64_t axis = 0);
Tensor one_hot(const Tensor& indices, int64_t depth, DType dtype = kF32);
// Rows of an embedding table [vocab, dim] for integer ids of any shape: [..., dim].
Tensor embedding_lookup(const Tensor& table, const Tensor& ids);

// ---- Writing into existing memory ----
// Writes src's values (any strides; same shape, dtype and device) into dst's memory, which every tensor
// sharing it then sees. Not recorded on a tape: for buffers the caller owns (variables, gradient buffers,
// communication outputs), never for values a tape may still need.
void copy_into(const Tensor& dst, const Tensor& src);

// ---- Operators ----
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
// A double operand becomes a scalar of the tensor's dtype and device.
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

}  // namespace gradflow
