#include "core/nn/layer.h"

#include <map>
#include <mutex>

#include "core/nn/symbolic.h"
#include "core/tensor/creation.h"

namespace gradflow {
namespace {

std::mutex names_mutex;
std::map<std::string, int>& name_counters() {
  static auto* counters = new std::map<std::string, int>();
  return *counters;
}

std::string unique_name(const std::string& type_name) {
  std::lock_guard<std::mutex> lock(names_mutex);
  int n = name_counters()[type_name]++;
  return n == 0 ? type_name : str_cat(type_name, "_", n);
}

}  // namespace

void reset_layer_names() {
  std::lock_guard<std::mutex> lock(names_mutex);
  name_counters().clear();
}

LayerImpl::LayerImpl(std::string type_name, std::string name)
    : type_name_(std::move(type_name)), name_(name.empty() ? unique_name(type_name_) : std::move(name)) {}

std::vector<Tensor> LayerImpl::apply(const std::vector<Tensor>& inputs, bool training) {
  if (!built_) {
    std::vector<Shape> shapes;
    for (const Tensor& t : inputs) shapes.push_back(t.shape());
    if (input_shape_.has_value() && inputs.size() == 1) {
      Shape got(inputs[0].shape().begin() + (inputs[0].rank() > 0 ? 1 : 0), inputs[0].shape().end());
      if (got != *input_shape_) {
        throw ShapeError(str_cat(name_, ": expected inputs of shape [batch]+", shape_str(*input_shape_), ", got ",
                                 shape_str(inputs[0].shape())));
      }
    }
    build(shapes);
    built_ = true;
  }
  return call_all(inputs, training);
}

std::vector<Shape> LayerImpl::compute_output_shape(const std::vector<Shape>& input_shapes,
                                                   const std::vector<DType>& input_dtypes) const {
  // Without a closed form, run the layer on a zero batch of one example (building it if needed), where
  // its weights are or will be built.
  std::vector<Variable> weights = variables();
  const Device device = weights.empty() ? current_device() : weights.front().device();
  std::vector<Tensor> probes;
  for (size_t i = 0; i < input_shapes.size(); ++i) {
    Shape with_batch{1};
    with_batch.insert(with_batch.end(), input_shapes[i].begin(), input_shapes[i].end());
    probes.push_back(zeros(with_batch, i < input_dtypes.size() ? input_dtypes[i] : kF32, device));
  }
  std::vector<Tensor> out = const_cast<LayerImpl*>(this)->apply(probes, false);
  std::vector<Shape> shapes;
  for (const Tensor& t : out) shapes.push_back(Shape(t.shape().begin() + 1, t.shape().end()));
  return shapes;
}

Tensor LayerImpl::call(const Tensor& x, bool training) {
  throw StateError(str_cat(name_, ": layer has no single-input call"));
}

std::vector<Tensor> LayerImpl::call_all(const std::vector<Tensor>& inputs, bool training) {
  if (inputs.size() != 1) {
    throw ValueError(str_cat(name_, ": expects 1 input, got ", inputs.size()));
  }
  return {call(inputs[0], training)};
}

Variable LayerImpl::add_weight(const std::string& weight_name, Shape shape, const Initializer& init, bool is_trainable,
                               DType dtype, VariableAggregation aggregation) {
  // Initialisers draw on the CPU (Philox: the same numbers a GPU would draw); the weight lives on the
  // current DeviceScope's device.
  Variable v(init(shape, dtype).to(current_device()), str_cat(name_, "/", weight_name), is_trainable,
             aggregation);
  variables_.push_back(v);
  variable_trainable_.push_back(is_trainable);
  return v;
}

std::vector<Variable> LayerImpl::trainable_variables() const {
  std::vector<Variable> out;
  if (!trainable) return out;
  for (size_t i = 0; i < variables_.size(); ++i) {
    if (variable_trainable_[i]) out.push_back(variables_[i]);
  }
  for (const auto& sub : sublayers()) {
    for (const Variable& v : sub->trainable_variables()) out.push_back(v);
  }
  return out;
}

std::vector<Variable> LayerImpl::non_trainable_variables() const {
  std::vector<Variable> out;
  for (size_t i = 0; i < variables_.size(); ++i) {
    if (!trainable || !variable_trainable_[i]) out.push_back(variables_[i]);
  }
  for (const auto& sub : sublayers()) {
    for (const Variable& v : sub->non_trainable_variables()) out.push_back(v);
  }
  return out;
}

std::vector<Variable> LayerImpl::variables() const {
  std::vector<Variable> out = trainable_variables();
  for (const Variable& v : non_trainable_variables()) out.push_back(v);
  return out;
}

int64_t LayerImpl::count_params() const {
  int64_t n = 0;
  for (const Variable& v : variables_) n += numel(v.shape());
  for (const auto& sub : sublayers()) n += sub->count_params();
  return n;
}

LayerImpl& Layer::impl() const {
  if (impl_ == nullptr) throw StateError("use of an empty Layer handle");
  return *impl_;
}

bool LayerImpl::synchronizes_replicas() const {
  for (const auto& l : sublayers()) {
    if (l->synchronizes_replicas()) return true;
  }
  return false;
}

}  // namespace gradflow
