// Tensor: an n-dimensional array of one dtype on one device, a cheap reference-counted handle.
//
//   Tensor x = from_vector<float>({1, 2, 3, 4}, {2, 2});
//   Tensor y = (x * x).sum();          // ops run eagerly (core/ops/ops.h)
//   Tensor xt = x.transpose();         // a view: shares x's storage
//   std::cout << xt << "\n";           // NumPy-like printing
//
// Tensors are values: ops return new tensors and never change their inputs (Variable, in core/autodiff,
// is the mutable holder). Views (reshape, transpose, permute, slice, expand) share storage and are
// recorded by a GradientTape like any other op. Every tensor has a unique id the tape tracks it by.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/device.h"
#include "core/tensor/dtype.h"
#include "core/tensor/shape.h"
#include "core/tensor/storage.h"

namespace gradflow {

// What an op's shape rule produces for each output, before any memory exists.
struct TensorMeta {
  Shape shape;
  DType dtype = kF32;
  Device device;
};

struct TensorImpl {
  TensorImpl(std::shared_ptr<Storage> storage, int64_t offset, Shape shape, Strides strides, DType dtype);
  std::shared_ptr<Storage> storage;
  int64_t offset;  // in elements
  Shape shape;
  Strides strides;  // in elements
  DType dtype;
  uint64_t id;
};

class Tensor {
 public:
  Tensor() = default;  // undefined: what GradientTape::gradient returns for an unconnected source
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int rank() const { return static_cast<int>(impl().shape.size()); }
  int64_t dim(int64_t axis) const;  // negative axes count from the end
  int64_t numel() const { return gradflow::numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  const Strides& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  bool is_contiguous() const;
  uint64_t id() const { return impl().id; }
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  // Address of the first element (storage + offset). data<T>() checks that T matches the dtype.
  void* raw_data() const;
  template <typename T>
  T* data() const;

  // The single element of a one-element tensor (any device), converted to T.
  template <typename T>
  T item() const;
  double item() const { return item<double>(); }
  // All elements in row-major order, copied to the host and converted to T.
  template <typename T>
  std::vector<T> to_vector() const;

  // Views and conversions; each is an op (core/ops/view_ops.cc) and is differentiable.
  Tensor reshape(Shape shape) const;  // one dimension may be -1; copies only when the strides require it
  Tensor transpose(int64_t axis0 = -2, int64_t axis1 = -1) const;
  Tensor permute(std::vector<int64_t> axes) const;
  Tensor slice(int64_t axis, int64_t start, int64_t stop, int64_t step = 1) const;  // Python-style bounds
  Tensor expand(Shape shape) const;  // = broadcast_to
  Tensor squeeze(int64_t axis) const;
  Tensor unsqueeze(int64_t axis) const;
  Tensor flatten() const { return reshape({-1}); }
  Tensor contiguous() const;  // this tensor when already contiguous, else a row-major copy
  Tensor clone() const;       // always a new row-major copy (differentiable)
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;
  Tensor cpu() const { return to(kCPU); }

  std::string str() const;  // NumPy-like text with shape, dtype and device

 private:
  const TensorImpl& impl() const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// An uninitialised contiguous tensor.
Tensor empty(Shape shape, DType dtype = kF32, Device device = kCPU);
inline Tensor empty(const TensorMeta& meta) { return empty(meta.shape, meta.dtype, meta.device); }
// A tensor sharing t's storage with another shape/strides/offset (no checks: for ops' view kernels).
Tensor make_view(const Tensor& t, Shape shape, Strides strides, int64_t offset);

template <typename T>
T* Tensor::data() const {
  if (dtype_of<T>() != dtype()) {
    throw DTypeError(str_cat("data<", dtype_name(dtype_of<T>()), ">() on a tensor of dtype ", dtype_name(dtype())));
  }
  return static_cast<T*>(raw_data());
}

}  // namespace gradflow
