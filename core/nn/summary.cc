// Model::summary(): the table Keras prints.
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
  int64_t total = count_params(), trainable_count = 0;
  for (const Variable& v : trainable_variables()) trainable_count += numel(v.shape());
  os << "Total params: " << with_commas(total) << "\n";
  os << "Trainable params: " << with_commas(trainable_count) << "\n";
  os << "Non-trainable params: " << with_commas(total - trainable_count) << "\n";
  os << rule << "\n";
  return os.str();
}

}  // namespace gradflow
