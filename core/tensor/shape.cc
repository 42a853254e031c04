#include "core/tensor/shape.h"

#include <algorithm>

#include "absl/strings/str_join.h"
#include "core/tensor/error.h"

namespace gradflow {

int64_t numel(absl::Span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Strides contiguous_strides(absl::Span<const int64_t> shape) {
  Strides strides(shape.size());
  int64_t s = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    strides[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

std::string shape_str(absl::Span<const int64_t> shape) { return str_cat("[", absl::StrJoin(shape, ","), "]"); }

Shape broadcast_shapes(std::string_view op, absl::Span<const int64_t> a, absl::Span<const int64_t> b) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) {
      throw ShapeError(str_cat(op, ": shapes ", shape_str(a), " and ", shape_str(b),
                                    " cannot be broadcast (dimension ", da, " vs ", db, ")"));
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int normalize_axis(std::string_view op, int64_t axis, int rank) {
  if (axis < -rank || axis >= rank) {
    throw ValueError(str_cat(op, ": axis ", axis, " is out of range for a tensor of rank ", rank));
  }
  return static_cast<int>(axis < 0 ? axis + rank : axis);
}

absl::InlinedVector<int, 6> normalize_axes(std::string_view op, absl::Span<const int64_t> axes, int rank) {
  absl::InlinedVector<int, 6> out;
  if (axes.empty()) {
    for (int i = 0; i < rank; ++i) out.push_back(i);
    return out;
  }
  for (int64_t a : axes) out.push_back(normalize_axis(op, a, rank));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace gradflow
