// Creating tensors from values and constants.
//
//   Tensor a = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
//   Tensor z = zeros({128, 10});
//   Tensor r = arange(0, 10, 2, kI64);   // [0 2 4 6 8]
#pragma once

#include <vector>

#include "core/tensor/tensor.h"

namespace gradflow {

// Copies values (row-major) into a new tensor of the given shape (default: 1-D); ShapeError when the
// counts differ.
template <typename T>
Tensor from_vector(const std::vector<T>& values, Shape shape, Device device = kCPU);
template <typename T>
Tensor from_vector(const std::vector<T>& values) {
  return from_vector(values, Shape{static_cast<int64_t>(values.size())});
}
// A rank-0 tensor.
Tensor scalar(double value, DType dtype = kF32, Device device = kCPU);

Tensor zeros(Shape shape, DType dtype = kF32, Device device = kCPU);
Tensor ones(Shape shape, DType dtype = kF32, Device device = kCPU);
Tensor full(Shape shape, double value, DType dtype = kF32, Device device = kCPU);
// [start, stop) in steps of step, like numpy.arange.
Tensor arange(double start, double stop, double step = 1, DType dtype = kF32, Device device = kCPU);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);

}  // namespace gradflow
