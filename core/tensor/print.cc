// NumPy-like printing: nested brackets, one aligned column width, "..." for long dimensions.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "absl/strings/str_format.h"
#include "core/tensor/tensor.h"

namespace gradflow {
namespace {

constexpr int64_t kEdgeItems = 3;      // shown at each end of a summarized dimension
constexpr int64_t kSummarizeOver = 1000;  // elements above which dimensions are summarized

std::string format_value(double v, DType dtype) {
  if (dtype == kBool) return v != 0 ? "True" : "False";
  if (!is_floating(dtype)) return absl::StrFormat("%.0f", v);
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == std::floor(v) && std::abs(v) < 1e16) return absl::StrFormat("%.0f.", v);
  std::string s = absl::StrFormat("%.4g", v);
  return s;
}

struct Printer {
  const std::vector<double>& values;
  const Shape& shape;
  DType dtype;
  bool summarize;
  size_t width = 0;
  std::ostringstream out;

  bool shown(int axis, int64_t i) const {
    return !summarize || shape[axis] <= 2 * kEdgeItems || i < kEdgeItems || i >= shape[axis] - kEdgeItems;
  }

  void measure(int axis, int64_t offset) {
    if (axis == static_cast<int>(shape.size())) {
      width = std::max(width, format_value(values[offset], dtype).size());
      return;
    }
    int64_t stride = numel(absl::MakeConstSpan(shape).subspan(axis + 1));
    for (int64_t i = 0; i < shape[axis]; ++i) {
      if (shown(axis, i)) measure(axis + 1, offset + i * stride);
    }
  }

  void print(int axis, int64_t offset, int indent) {
    if (axis == static_cast<int>(shape.size())) {
      std::string s = format_value(values[offset], dtype);
      out << std::string(width - s.size(), ' ') << s;
      return;
    }
    int64_t stride = numel(absl::MakeConstSpan(shape).subspan(axis + 1));
    bool last = axis + 1 == static_cast<int>(shape.size());
    out << "[";
    bool skipped = false;
    for (int64_t i = 0; i < shape[axis]; ++i) {
      if (!shown(axis, i)) {
        if (!skipped) {
          out << (last ? " ..." : "...\n" + std::string(indent + 1, ' '));
          skipped = true;
        }
        continue;
      }
      if (i > 0) {
        if (last) {
          out << " ";
        } else {
          out << std::string(shape.size() - axis - 1, '\n') << std::string(indent + 1, ' ');
        }
      }
      print(axis + 1, offset + i * stride, indent + 1);
    }
    out << "]";
  }
};

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::vector<double> values = to_vector<double>();
  Printer p{values, shape(), dtype(), numel() > kSummarizeOver};
  if (rank() == 0) {
    p.out << format_value(values[0], dtype());
  } else {
    p.measure(0, 0);
    p.print(0, 0, 0);
  }
  return str_cat(p.out.str(), "\nTensor(shape=", shape_str(shape()), ", dtype=", dtype_name(dtype()),
                      ", device=", device().str(), ")");
}

}  // namespace gradflow
