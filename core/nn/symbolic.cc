#include "core/nn/symbolic.h"

#include <atomic>

namespace gradflow {

SymbolicTensor Input(Shape shape, DType dtype, std::string name) {
  static std::atomic<int> counter{0};
  int n = counter++;
  auto node = std::make_shared<LayerNode>();
  node->input_name = name.empty() ? (n == 0 ? "input" : str_cat("input_", n)) : std::move(name);
  node->output_shapes = {shape};
  return SymbolicTensor(std::move(node), 0, std::move(shape), dtype);
}

std::vector<SymbolicTensor> Layer::operator()(const std::vector<SymbolicTensor>& xs) const {
  std::vector<Shape> shapes;
  std::vector<DType> dtypes;
  for (const SymbolicTensor& x : xs) {
    shapes.push_back(x.shape());
    dtypes.push_back(x.dtype());
  }
  auto node = std::make_shared<LayerNode>();
  node->layer = ptr();
  node->inputs = xs;
  node->output_shapes = impl().compute_output_shape(shapes, dtypes);
  std::vector<SymbolicTensor> out;
  for (size_t i = 0; i < node->output_shapes.size(); ++i) {
    DType in = xs.empty() ? kF32 : xs[0].dtype();
    out.emplace_back(node, static_cast<int>(i), node->output_shapes[i], is_floating(in) ? in : kF32);
  }
  return out;
}

SymbolicTensor Layer::operator()(const SymbolicTensor& x) const { return (*this)(std::vector<SymbolicTensor>{x}).at(0); }

}  // namespace gradflow
