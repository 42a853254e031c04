// Shared by the CPU and CUDA gather/scatter_add kernels: a shape viewed as [outer, n, inner] around an
// axis, and index validation that names the first bad index (so no kernel ever reads out of bounds).
#pragma once

#include <string_view>
#include <vector>

#include "core/tensor/tensor.h"

namespace gradflow {

struct AxisSplit {
  int64_t outer = 1, n = 1, inner = 1;
};

inline AxisSplit split_at(const Shape& shape, int axis) {
  AxisSplit s;
  for (int d = 0; d < static_cast<int>(shape.size()); ++d) {
    if (d < axis) {
      s.outer *= shape[d];
    } else if (d == axis) {
      s.n = shape[d];
    } else {
      s.inner *= shape[d];
    }
  }
  return s;
}

// The indices on the host as i64, after checking each lies in [0, n); ValueError naming op, index and position.
inline std::vector<int64_t> checked_indices(std::string_view op, const Tensor& indices, int64_t n) {
  std::vector<int64_t> ids = indices.to_vector<int64_t>();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= n) {
      throw ValueError(str_cat(op, ": index ", ids[i], " at position ", i, " is outside [0, ", n, ")"));
    }
  }
  return ids;
}

}  // namespace gradflow
