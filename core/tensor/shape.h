// Shapes and strides (in elements) of tensors, and the NumPy broadcasting rule.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/container/inlined_vector.h"
#include "absl/types/span.h"

namespace gradflow {

// Up to 6 dimensions live inline, so small tensors never allocate for their shape.
using Shape = absl::InlinedVector<int64_t, 6>;
using Strides = absl::InlinedVector<int64_t, 6>;

int64_t numel(absl::Span<const int64_t> shape);
Strides contiguous_strides(absl::Span<const int64_t> shape);
std::string shape_str(absl::Span<const int64_t> shape);  // "[32,784]", "[]" for a scalar

// The broadcast of two shapes (NumPy rules), or ShapeError naming the op and both shapes.
Shape broadcast_shapes(std::string_view op, absl::Span<const int64_t> a, absl::Span<const int64_t> b);

// Maps a possibly negative axis into [0, rank); ValueError naming the op when out of range.
int normalize_axis(std::string_view op, int64_t axis, int rank);
// Normalizes, sorts and de-duplicates axes; an empty list means "all axes".
absl::InlinedVector<int, 6> normalize_axes(std::string_view op, absl::Span<const int64_t> axes, int rank);

}  // namespace gradflow
