// The Keras layers, created by functions named like the Keras classes. Defaults follow Keras:
// glorot_uniform kernels, zero biases, kernels laid out [in, out], channels-last images.
//
//   Layer d = Dense(128, {.activation = "relu"});
//   Layer c = Conv2D(32, {3, 3}, {.padding = "same", .activation = "relu"});
#pragma once

#include <array>
#include <optional>
#include <string>

#include "core/nn/layer.h"

namespace gradflow {

struct DenseOptions {
  std::string activation;  // "" = linear
  bool use_bias = true;
  std::string kernel_initializer = "glorot_uniform";
  std::string bias_initializer = "zeros";
  std::optional<Shape> input_shape;  // per example, as Keras' input_shape=
  std::string name;
};
Layer Dense(int64_t units, DenseOptions options = {});

struct Conv2DLayerOptions {
  std::array<int64_t, 2> strides{1, 1};
  std::string padding = "valid";  // "valid" or "same"
  std::array<int64_t, 2> dilation_rate{1, 1};
  std::string activation;
  bool use_bias = true;
  std::string kernel_initializer = "glorot_uniform";
  std::string bias_initializer = "zeros";
  std::optional<Shape> input_shape;
  std::string name;
};
Layer Conv2D(int64_t filters, std::array<int64_t, 2> kernel_size, Conv2DLayerOptions options = {});

struct PoolOptions {
  std::optional<std::array<int64_t, 2>> strides;  // default: the pool size
  std::string padding = "valid";
  std::string name;
};
Layer MaxPool2D(std::array<int64_t, 2> pool_size = {2, 2}, PoolOptions options = {});
Layer AvgPool2D(std::array<int64_t, 2> pool_size = {2, 2}, PoolOptions options = {});
Layer GlobalAveragePooling2D(std::string name = "");

// Flattens each example; input_shape lets it start a Sequential model (Flatten({28, 28})).
Layer Flatten(std::optional<Shape> input_shape = std::nullopt, std::string name = "");
Layer Reshape(Shape target_shape, std::string name = "");
Layer Dropout(double rate, std::optional<uint64_t> seed = std::nullopt, std::string name = "");
// relu, gelu, tanh, sigmoid, softmax, softplus, linear.
Layer Activation(const std::string& activation, std::string name = "");

struct BatchNormalizationOptions {
  double momentum = 0.99;
  double epsilon = 1e-3;
  bool center = true;
  bool scale = true;
  std::string name;
};
// Normalizes the last axis; moving statistics update in training, are used in inference.
Layer BatchNormalization(BatchNormalizationOptions options = {});
// BatchNormalization over the global batch of a data-parallel step (every replica's rows together, as
// tf.keras.layers.experimental.SyncBatchNormalization): identical statistics and moving averages on every
// replica. Alone (no strategy) it equals BatchNormalization.
Layer SyncBatchNormalization(BatchNormalizationOptions options = {});

struct LayerNormalizationOptions {
  double epsilon = 1e-3;
  bool center = true;
  bool scale = true;
  std::string name;
};
Layer LayerNormalization(LayerNormalizationOptions options = {});

struct EmbeddingOptions {
  std::string embeddings_initializer = "random_uniform";  // U(-0.05, 0.05) as Keras
  std::string name;
};
Layer Embedding(int64_t input_dim, int64_t output_dim, EmbeddingOptions options = {});

struct LSTMOptions {
  std::string activation = "tanh";
  std::string recurrent_activation = "sigmoid";
  bool return_sequences = false;
  bool unit_forget_bias = true;
  std::string name;
};
// Input [batch, time, features] -> [batch, units] (or [batch, time, units] with return_sequences).
Layer LSTM(int64_t units, LSTMOptions options = {});

// Applies an activation by name; ValueError for unknown names.
Tensor apply_activation(const std::string& name, const Tensor& x);

}  // namespace gradflow
