#include "core/nn/model.h"

#include <algorithm>
#include <set>

#include "core/nn/training.h"

namespace gradflow {

ModelImpl::ModelImpl(std::string type_name, std::string name) : LayerImpl(std::move(type_name), std::move(name)) {}
ModelImpl::~ModelImpl() = default;

Device ModelImpl::run_device() const {
  // A replica of MirroredStrategy over devices runs on its own (its thread's DeviceScope), with its copies.
  return current_mirror_replica() >= 0 ? current_device() : device_;
}

std::vector<Tensor> ModelImpl::placed(const std::vector<Tensor>& inputs) const {
  const Device device = run_device();
  std::vector<Tensor> out;
  out.reserve(inputs.size());
  for (const Tensor& t : inputs) out.push_back(t.defined() ? t.to(device) : t);
  return out;
}

std::vector<std::shared_ptr<LayerImpl>> ModelImpl::sublayers() const {
  std::vector<std::shared_ptr<LayerImpl>> out;
  for (const Layer& l : layers()) out.push_back(l.ptr());
  return out;
}

// ---- Sequential ----

SequentialImpl::SequentialImpl(std::vector<Layer> layers, std::string name)
    : ModelImpl("sequential", std::move(name)) {
  for (Layer& l : layers) add(std::move(l));
}

void SequentialImpl::add(Layer layer) {
  for (const Layer& l : layers_) {
    if (l.ptr() == layer.ptr()) throw ValueError(str_cat(name(), ": layer '", layer.name(), "' was added twice"));
  }
  layers_.push_back(std::move(layer));
  // With a declared input shape the model builds as layers arrive, as Keras' Sequential does.
  layer_output_shapes();
}

std::vector<Tensor> SequentialImpl::forward(const std::vector<Tensor>& inputs, bool training) {
  if (inputs.size() != 1) throw ValueError(str_cat(name(), ": a Sequential model takes 1 input, got ", inputs.size()));
  if (layers_.empty()) throw StateError(str_cat(name(), ": the model has no layers"));
  DeviceScope scope(run_device());
  std::vector<Tensor> x = placed(inputs);
  for (const Layer& l : layers_) x = l.impl().apply(x, training);
  return x;
}

std::vector<std::vector<Shape>> SequentialImpl::layer_output_shapes() const {
  if (layers_.empty() || !layers_[0].impl().input_shape().has_value()) return {};
  DeviceScope scope(device_);  // layers this builds (add() after the model's scope ended) go with the model
  std::vector<Shape> shapes{*layers_[0].impl().input_shape()};
  std::vector<std::vector<Shape>> out;
  for (const Layer& l : layers_) {
    shapes = l.impl().compute_output_shape(shapes, {});
    out.push_back(shapes);
  }
  return out;
}

// ---- Functional ----

FunctionalImpl::FunctionalImpl(std::vector<SymbolicTensor> inputs, std::vector<SymbolicTensor> outputs,
                               std::string name)
    : ModelImpl("functional", std::move(name)), inputs_(std::move(inputs)), outputs_(std::move(outputs)) {
  if (inputs_.empty() || outputs_.empty()) throw ValueError(str_cat(this->name(), ": a model needs inputs and outputs"));
  std::set<LayerNode*> input_nodes;
  for (const SymbolicTensor& t : inputs_) {
    if (t.node()->layer != nullptr) {
      throw ValueError(str_cat(this->name(), ": model inputs must come from Input(), not from a layer"));
    }
    input_nodes.insert(t.node().get());
  }
  // Depth-first post-order from the outputs gives a topological order of the layer nodes.
  std::set<LayerNode*> done;
  std::function<void(const std::shared_ptr<LayerNode>&)> visit = [&](const std::shared_ptr<LayerNode>& n) {
    if (done.count(n.get())) return;
    done.insert(n.get());
    if (n->layer == nullptr) {
      if (!input_nodes.count(n.get())) {
        throw ValueError(str_cat(this->name(), ": output depends on input '", n->input_name,
                                 "', which is not among the model's inputs"));
      }
      return;
    }
    for (const SymbolicTensor& in : n->inputs) visit(in.node());
    order_.push_back(n);
  };
  for (const SymbolicTensor& t : outputs_) visit(t.node());
}

std::vector<Tensor> FunctionalImpl::forward(const std::vector<Tensor>& inputs, bool training) {
  if (inputs.size() != inputs_.size()) {
    throw ValueError(str_cat(name(), ": expected ", inputs_.size(), " inputs, got ", inputs.size()));
  }
  std::map<const LayerNode*, std::vector<Tensor>> values;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Shape& want = inputs_[i].shape();
    Shape got(inputs[i].shape().begin() + std::min<int>(1, inputs[i].rank()), inputs[i].shape().end());
    if (got != want) {
      throw ShapeError(str_cat(name(), ": input ", i, " ('", inputs_[i].node()->input_name, "') expects [batch]+",
                               shape_str(want), ", got ", shape_str(inputs[i].shape())));
    }
    values[inputs_[i].node().get()] = {inputs[i]};
  }
  DeviceScope scope(run_device());
  for (auto& [node, value] : values) value = placed(value);
  for (const auto& node : order_) {
    std::vector<Tensor> args;
    for (const SymbolicTensor& in : node->inputs) args.push_back(values.at(in.node().get()).at(in.index()));
    values[node.get()] = node->layer->apply(args, training);
  }
  std::vector<Tensor> out;
  for (const SymbolicTensor& t : outputs_) out.push_back(values.at(t.node().get()).at(t.index()));
  return out;
}

std::vector<Layer> FunctionalImpl::layers() const {
  std::vector<Layer> out;
  std::set<LayerImpl*> seen;  // a layer applied twice (shared weights) is listed once
  for (const auto& node : order_) {
    if (seen.insert(node->layer.get()).second) out.push_back(Layer(node->layer));
  }
  return out;
}

std::vector<std::vector<Shape>> FunctionalImpl::layer_output_shapes() const {
  std::vector<std::vector<Shape>> out;
  std::set<LayerImpl*> seen;
  for (const auto& node : order_) {
    if (seen.insert(node->layer.get()).second) out.push_back(node->output_shapes);
  }
  return out;
}

// ---- handles ----

ModelImpl& Model::impl() const {
  if (impl_ == nullptr) throw StateError("use of an empty Model handle");
  return *impl_;
}

Model::Model(std::vector<SymbolicTensor> inputs, std::vector<SymbolicTensor> outputs, std::string name)
    : impl_(std::make_shared<FunctionalImpl>(std::move(inputs), std::move(outputs), std::move(name))) {}

Sequential::Sequential(std::vector<Layer> layers, std::string name)
    : Model(std::make_shared<SequentialImpl>(std::move(layers), std::move(name))) {}

void Sequential::add(Layer layer) { static_cast<SequentialImpl&>(impl()).add(std::move(layer)); }

}  // namespace gradflow
