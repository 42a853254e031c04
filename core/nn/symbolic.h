// Symbolic tensors for the functional API: Input() starts a graph, applying layers to symbolic tensors
// records nodes, and Model(inputs, outputs) runs the recorded graph.
//
//   SymbolicTensor in = Input({784});
//   SymbolicTensor h = Dense(128, {.activation = "relu"})(in);
//   Model model({in}, {Dense(10)(h)});
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/nn/layer.h"

namespace gradflow {

struct LayerNode;

// A symbolic stand-in for a layer output: shape without the batch axis, dtype, and the node making it.
class SymbolicTensor {
 public:
  SymbolicTensor(std::shared_ptr<LayerNode> node, int index, Shape shape, DType dtype)
      : node_(std::move(node)), index_(index), shape_(std::move(shape)), dtype_(dtype) {}
  const Shape& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  const std::shared_ptr<LayerNode>& node() const { return node_; }
  int index() const { return index_; }

 private:
  std::shared_ptr<LayerNode> node_;
  int index_;
  Shape shape_;
  DType dtype_;
};

// One layer application (or a model input when layer is null).
struct LayerNode {
  std::shared_ptr<LayerImpl> layer;
  std::vector<SymbolicTensor> inputs;
  std::vector<Shape> output_shapes;
  std::string input_name;  // for Input nodes
};

// A model input of the given per-example shape (without the batch axis).
SymbolicTensor Input(Shape shape, DType dtype = kF32, std::string name = "");

}  // namespace gradflow
