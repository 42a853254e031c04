// Models: Sequential (a stack of layers) and the functional Model (a graph of layers from Input()s to
// outputs, with any number of inputs and outputs). Both are layers themselves, print a Keras-like
// summary(), and train with compile/fit/evaluate/predict (core/nn/training.h).
//
//   Sequential model({Flatten(Shape{28, 28}), Dense(128, {.activation = "relu"}), Dropout(0.2), Dense(10)});
//   std::cout << model.summary();
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/nn/layer.h"
#include "core/nn/symbolic.h"
#include "core/nn/training_types.h"

namespace gradflow {

class ModelImpl : public LayerImpl {
 public:
  ModelImpl(std::string type_name, std::string name);
  ~ModelImpl() override;
  // Runs the model; multiple inputs/outputs in the order given at construction.
  virtual std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool training) = 0;
  // The layers in execution order.
  virtual std::vector<Layer> layers() const = 0;
  // Per-layer output shapes (without batch) for summary(); empty when not yet known.
  virtual std::vector<std::vector<Shape>> layer_output_shapes() const = 0;
  std::vector<std::shared_ptr<LayerImpl>> sublayers() const override;
  virtual std::string summary() const;

  std::unique_ptr<TrainingConfig> training;  // set by compile()

  // Where the model runs: the DeviceScope's device when the model was made. forward() copies inputs
  // there and makes it current, so that layers built by their first call put their weights there too.
  Device device() const { return device_; }

 protected:
  // Where this thread runs the model: its device, or a MirroredStrategy replica's own.
  Device run_device() const;
  // The inputs on run_device(); hold a DeviceScope of it while the layers run.
  std::vector<Tensor> placed(const std::vector<Tensor>& inputs) const;
  const Device device_ = current_device();

  std::vector<Tensor> call_all(const std::vector<Tensor>& inputs, bool training) override {
    return forward(inputs, training);
  }
};

class SequentialImpl : public ModelImpl {
 public:
  SequentialImpl(std::vector<Layer> layers, std::string name);
  void add(Layer layer);
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool training) override;
  std::vector<Layer> layers() const override { return layers_; }
  std::vector<std::vector<Shape>> layer_output_shapes() const override;

 private:
  std::vector<Layer> layers_;
};

class FunctionalImpl : public ModelImpl {
 public:
  FunctionalImpl(std::vector<SymbolicTensor> inputs, std::vector<SymbolicTensor> outputs, std::string name);
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs, bool training) override;
  std::vector<Layer> layers() const override;
  std::vector<std::vector<Shape>> layer_output_shapes() const override;
  // Keras' functional table: input layers and a "Connected to" column.
  std::string summary() const override;

 private:
  std::vector<SymbolicTensor> inputs_, outputs_;
  std::vector<std::shared_ptr<LayerNode>> order_;  // layer nodes in topological order
};

// "max_pooling2d" -> "MaxPooling2D": the Keras class name shown for a layer type.
std::string keras_class_name(const std::string& type_name);

// A handle to any model. Copies share the model.
class Model {
 public:
  Model() = default;
  explicit Model(std::shared_ptr<ModelImpl> impl) : impl_(std::move(impl)) {}
  // The functional API.
  Model(std::vector<SymbolicTensor> inputs, std::vector<SymbolicTensor> outputs, std::string name = "");

  Tensor operator()(const Tensor& x, bool training = false) const { return impl().forward({x}, training).at(0); }
  std::vector<Tensor> operator()(const std::vector<Tensor>& xs, bool training = false) const {
    return impl().forward(xs, training);
  }
  const std::string& name() const { return impl().name(); }
  std::vector<Layer> layers() const { return impl().layers(); }
  std::vector<Variable> trainable_variables() const { return impl().trainable_variables(); }
  std::vector<Variable> non_trainable_variables() const { return impl().non_trainable_variables(); }
  std::vector<Variable> variables() const { return impl().variables(); }
  int64_t count_params() const { return impl().count_params(); }
  std::string summary() const { return impl().summary(); }
  Layer as_layer() const { return Layer(impl_); }

  // Keras training (core/nn/training.cc).
  void compile(OptimizerSpec optimizer, LossSpec loss, std::vector<MetricSpec> metrics = {});
  History fit(const Tensor& x, const Tensor& y, const FitOptions& options = {});
  Logs evaluate(const Tensor& x, const Tensor& y, const EvaluateOptions& options = {});
  Tensor predict(const Tensor& x, int64_t batch_size = 32);
  History fit(const Dataset& dataset, const FitOptions& options = {});
  Logs evaluate(const Dataset& dataset, const EvaluateOptions& options = {});

  ModelImpl& impl() const;
  const std::shared_ptr<ModelImpl>& ptr() const { return impl_; }

 protected:
  std::shared_ptr<ModelImpl> impl_;
};

class Sequential : public Model {
 public:
  explicit Sequential(std::vector<Layer> layers = {}, std::string name = "");
  void add(Layer layer);
};

}  // namespace gradflow
