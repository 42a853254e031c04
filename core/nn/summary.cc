// Model::summary(): the table Keras prints.
#include <map>
#include <set>
#include <sstream>

#include "core/nn/model.h"

namespace gradflow {
namespace {

}  // namespace

std::string keras_class_name(const std::string& type_name) {
  if (type_name == "lstm") return "LSTM";
  if (type_name == "functional") return "Functional";
  std::string out;
  bool upper = true;
  for (size_t i = 0; i < type_name.size(); ++i) {
    char c = type_name[i];
    if (c == '_') {
      upper = true;
      continue;
    }
    if (c == 'd' && i > 0 && std::isdigit(static_cast<unsigned char>(type_name[i - 1]))) c = 'D';
    out += upper ? static_cast<char>(std::toupper(c)) : c;
    upper = false;
  }
  return out;
}

namespace {

std::string shape_text(const Shape& s) {
  std::string out = "(None";
  for (int64_t d : s) out += str_cat(", ", d);
  return out + ")";
}

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string pad(const std::string& s, size_t width) { return s.size() >= width ? s + " " : s + std::string(width - s.size(), ' '); }

// The summary's closing lines, shared by both table layouts.
void write_totals(std::ostringstream& os, const ModelImpl& m, size_t width) {
  int64_t total = m.count_params(), trainable_count = 0;
  for (const Variable& v : m.trainable_variables()) trainable_count += numel(v.shape());
  os << "Total params: " << with_commas(total) << "\n";
  os << "Trainable params: " << with_commas(trainable_count) << "\n";
  os << "Non-trainable params: " << with_commas(total - trainable_count) << "\n";
  os << std::string(width, '_') << "\n";
}


}  // namespace

std::string ModelImpl::summary() const {
  constexpr size_t kName = 29, kShape = 26, kParams = 10;
  std::string rule(65, '_'), double_rule(65, '=');
  std::ostringstream os;
  os << "Model: \"" << name() << "\"\n" << rule << "\n";
  os << " " << pad("Layer (type)", kName - 1) << pad("Output Shape", kShape) << pad("Param #", kParams) << "\n";
  os << double_rule << "\n";
  std::vector<Layer> ls = layers();
  std::vector<std::vector<Shape>> shapes = layer_output_shapes();
  for (size_t i = 0; i < ls.size(); ++i) {
    const LayerImpl& l = ls[i].impl();
    std::string shape = i < shapes.size() && !shapes[i].empty() ? shape_text(shapes[i][0]) : "multiple";
    std::string params = l.built() || i < shapes.size() ? std::to_string(l.count_params()) : "0 (unbuilt)";
    os << " " << pad(str_cat(l.name(), " (", keras_class_name(l.type_name()), ")"), kName - 1) << pad(shape, kShape)
       << pad(params, kParams) << "\n";
    os << std::string(65, ' ') << "\n";
  }
  os << double_rule << "\n";
  write_totals(os, *this, rule.size());
  return os.str();
}


std::string FunctionalImpl::summary() const {
  constexpr size_t kWidth = 98, kName = 32, kShape = 21, kParams = 12, kConnected = 33;
  std::ostringstream os;
  auto row = [&](const std::string& name, const std::string& shape, const std::string& params,
                 const std::string& connected) {
    os << " " << pad(name, kName - 1) << pad(shape, kShape) << pad(params, kParams) << pad(connected, kConnected)
       << "\n" << std::string(kWidth, ' ') << "\n";
  };
  os << "Model: \"" << name() << "\"\n" << std::string(kWidth, '_') << "\n";
  os << " " << pad("Layer (type)", kName - 1) << pad("Output Shape", kShape) << pad("Param #", kParams)
     << pad("Connected to", kConnected) << "\n";
  os << std::string(kWidth, '=') << "\n";
  auto label = [](const SymbolicTensor& t, const std::map<const LayerNode*, std::pair<std::string, int>>& ids) {
    const auto& [layer, call] = ids.at(t.node().get());
    return str_cat("'", layer, "[", call, "][", t.index(), "]'");
  };
  // Keras names an inbound tensor layer[call][output]: which application of the layer, which output.
  std::map<const LayerNode*, std::pair<std::string, int>> ids;
  for (const SymbolicTensor& in : inputs_) {
    ids[in.node().get()] = {in.node()->input_name, 0};
    row(str_cat(in.node()->input_name, " (InputLayer)"), "[" + shape_text(in.shape()) + "]", "0", "[]");
  }
  std::map<const LayerImpl*, int> calls;
  for (const auto& node : order_) ids[node.get()] = {node->layer->name(), calls[node->layer.get()]++};
  std::set<const LayerImpl*> shown;
  for (const auto& node : order_) {
    if (!shown.insert(node->layer.get()).second) continue;
    std::string connected = "[";
    for (const auto& other : order_) {  // every application of this layer, in order
      if (other->layer != node->layer) continue;
      for (const SymbolicTensor& in : other->inputs) connected += (connected.size() > 1 ? ", " : "") + label(in, ids);
    }
    const LayerImpl& l = *node->layer;
    row(str_cat(l.name(), " (", keras_class_name(l.type_name()), ")"), shape_text(node->output_shapes.at(0)),
        std::to_string(l.count_params()), connected + "]");
  }
  os << std::string(kWidth, '=') << "\n";
  write_totals(os, *this, kWidth);
  return os.str();
}

}  // namespace gradflow
