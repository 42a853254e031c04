#include "core/tensor/tensor.h"

#include <atomic>
#include <ostream>

#include "core/tensor/error.h"

namespace gradflow {
namespace {
std::atomic<uint64_t> next_tensor_id{1};
}  // namespace

TensorImpl::TensorImpl(std::shared_ptr<Storage> storage_in, int64_t offset_in, Shape shape_in, Strides strides_in,
                       DType dtype_in)
    : storage(std::move(storage_in)),
      offset(offset_in),
      shape(std::move(shape_in)),
      strides(std::move(strides_in)),
      dtype(dtype_in),
      id(next_tensor_id.fetch_add(1, std::memory_order_relaxed)) {}

const TensorImpl& Tensor::impl() const {
  if (impl_ == nullptr) throw StateError("use of an undefined tensor (for example an empty gradient)");
  return *impl_;
}

int64_t Tensor::dim(int64_t axis) const { return shape()[normalize_axis("dim", axis, rank())]; }

bool Tensor::is_contiguous() const {
  const Shape& s = shape();
  const Strides& st = strides();
  int64_t expected = 1;
  for (int i = rank() - 1; i >= 0; --i) {
    if (s[i] != 1 && st[i] != expected) return false;
    expected *= s[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  const TensorImpl& i = impl();
  return static_cast<char*>(i.storage->data()) + i.offset * static_cast<int64_t>(dtype_size(i.dtype));
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = contiguous().to(kCPU);
  std::vector<T> out(host.numel());
  visit_all(host.dtype(), [&](auto tag) {
    using S = typename decltype(tag)::type;
    const S* src = static_cast<const S*>(host.raw_data());
    for (size_t i = 0; i < out.size(); ++i) out[i] = convert<T>(src[i]);
  });
  return out;
}

template <typename T>
T Tensor::item() const {
  if (numel() != 1) {
    throw ValueError(str_cat("item(): tensor of shape ", shape_str(shape()), " has ", numel(),
                                  " elements, not 1"));
  }
  return to_vector<T>()[0];
}

#define GF_INSTANTIATE_ACCESSORS(T)                    \
  template std::vector<T> Tensor::to_vector<T>() const; \
  template T Tensor::item<T>() const;
GF_INSTANTIATE_ACCESSORS(float)
GF_INSTANTIATE_ACCESSORS(double)
GF_INSTANTIATE_ACCESSORS(int32_t)
GF_INSTANTIATE_ACCESSORS(int64_t)
GF_INSTANTIATE_ACCESSORS(uint8_t)
GF_INSTANTIATE_ACCESSORS(bool)
GF_INSTANTIATE_ACCESSORS(Half)
GF_INSTANTIATE_ACCESSORS(BFloat16)
#undef GF_INSTANTIATE_ACCESSORS

Tensor empty(Shape shape, DType dtype, Device device) {
  for (int64_t d : shape) {
    if (d < 0) throw ValueError(str_cat("empty: negative dimension in shape ", shape_str(shape)));
  }
  size_t nbytes = static_cast<size_t>(gradflow::numel(shape)) * dtype_size(dtype);
  Strides strides = contiguous_strides(shape);
  return Tensor(std::make_shared<TensorImpl>(Storage::allocate(nbytes, device), 0, std::move(shape),
                                             std::move(strides), dtype));
}

Tensor make_view(const Tensor& t, Shape shape, Strides strides, int64_t offset) {
  return Tensor(std::make_shared<TensorImpl>(t.storage(), offset, std::move(shape), std::move(strides), t.dtype()));
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace gradflow
