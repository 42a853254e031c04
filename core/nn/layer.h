// Keras-style layers. A `Layer` is a cheap handle (like Tensor) to a shared `LayerImpl`; the functions
// in layers.h (Dense, Conv2D, ...) create them. Layers build lazily: their weights are created on the
// first call, from the input's shape. Names are unique per process in Keras' style: dense, dense_1, ...
//
//   Layer dense = Dense(128, {.activation = "relu"});
//   Tensor y = dense(x);                              // builds kernel [784,128] and bias [128]
//   dense.trainable_variables();                      // {dense/kernel, dense/bias}
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/autodiff/variable.h"
#include "core/nn/initializers.h"
#include "core/tensor/tensor.h"

namespace gradflow {

class SymbolicTensor;

class LayerImpl {
 public:
  // type_name: the Keras class in snake case ("dense"); name: explicit, or "" for the next unique one.
  LayerImpl(std::string type_name, std::string name);
  virtual ~LayerImpl() = default;

  const std::string& name() const { return name_; }
  const std::string& type_name() const { return type_name_; }
  bool built() const { return built_; }
  // The shape of one example this layer expects (without the batch axis), when declared up front.
  const std::optional<Shape>& input_shape() const { return input_shape_; }
  void set_input_shape(Shape shape) { input_shape_ = std::move(shape); }

  // Runs the layer; builds it first from the inputs' shapes. Layers with one input see inputs[0].
  std::vector<Tensor> apply(const std::vector<Tensor>& inputs, bool training);
  // The output shape (without batch) for input shapes (without batch), without running anything.
  virtual std::vector<Shape> compute_output_shape(const std::vector<Shape>& input_shapes,
                                                  const std::vector<DType>& input_dtypes) const;

  std::vector<Variable> trainable_variables() const;
  std::vector<Variable> non_trainable_variables() const;
  std::vector<Variable> variables() const;  // trainable first, then the rest (as Keras' layer.weights)
  // Nested layers (for layers built from layers, such as models); their variables are included above.
  virtual std::vector<std::shared_ptr<LayerImpl>> sublayers() const { return {}; }
  int64_t count_params() const;
  bool trainable = true;  // false freezes every weight of the layer (Keras' layer.trainable)
  // Whether a training step's forward and backward talk to the other replicas (SyncBatchNormalization):
  // then every replica must run them in every step, even one without rows of its own.
  virtual bool synchronizes_replicas() const;

 protected:
  // Creates weights from the shapes of the inputs (batch axis included).
  virtual void build(const std::vector<Shape>& input_shapes) {}
  // Single-input layers override this; multi-input layers override call_all.
  virtual Tensor call(const Tensor& x, bool training);
  virtual std::vector<Tensor> call_all(const std::vector<Tensor>& inputs, bool training);
  Variable add_weight(const std::string& weight_name, Shape shape, const Initializer& init, bool trainable = true,
                      DType dtype = kF32, VariableAggregation aggregation = VariableAggregation::kNone);

 private:
  std::string type_name_;
  std::string name_;
  bool built_ = false;
  std::optional<Shape> input_shape_;
  std::vector<Variable> variables_;
  std::vector<bool> variable_trainable_;
};

class Layer {
 public:
  Layer() = default;
  explicit Layer(std::shared_ptr<LayerImpl> impl) : impl_(std::move(impl)) {}

  Tensor operator()(const Tensor& x, bool training = false) const { return impl().apply({x}, training).at(0); }
  std::vector<Tensor> operator()(const std::vector<Tensor>& xs, bool training = false) const {
    return impl().apply(xs, training);
  }
  // Functional API: applying a layer to symbolic inputs records a node of the model graph.
  SymbolicTensor operator()(const SymbolicTensor& x) const;
  std::vector<SymbolicTensor> operator()(const std::vector<SymbolicTensor>& xs) const;

  const std::string& name() const { return impl().name(); }
  std::vector<Variable> trainable_variables() const { return impl().trainable_variables(); }
  std::vector<Variable> variables() const { return impl().variables(); }
  LayerImpl& impl() const;
  const std::shared_ptr<LayerImpl>& ptr() const { return impl_; }
  template <typename T>
  T& as() const {
    T* p = dynamic_cast<T*>(impl_.get());
    if (p == nullptr) throw ValueError(str_cat("layer '", impl().name(), "' is not of the requested type"));
    return *p;
  }

 private:
  std::shared_ptr<LayerImpl> impl_;
};

// Forgets the per-type name counters, so the next dense layer is "dense" again (Keras' clear_session).
void reset_layer_names();

}  // namespace gradflow
