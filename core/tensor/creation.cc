#include "core/tensor/creation.h"

#include <cmath>
#include <cstring>

#if GRADFLOW_WITH_CUDA
#include "core/tensor/cuda/fill.h"
#endif

namespace gradflow {

template <typename T>
Tensor from_vector(const std::vector<T>& values, Shape shape, Device device) {
  if (static_cast<int64_t>(values.size()) != numel(shape)) {
    throw ShapeError(str_cat("from_vector: ", values.size(), " values do not fill shape ", shape_str(shape),
                                  " (", numel(shape), " elements)"));
  }
  Tensor host = empty(std::move(shape), dtype_of<T>(), kCPU);
  T* out = static_cast<T*>(host.raw_data());
  for (size_t i = 0; i < values.size(); ++i) out[i] = values[i];
  return device.is_cpu() ? host : host.to(device);
}

template Tensor from_vector<float>(const std::vector<float>&, Shape, Device);
template Tensor from_vector<double>(const std::vector<double>&, Shape, Device);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, Shape, Device);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, Shape, Device);
template Tensor from_vector<uint8_t>(const std::vector<uint8_t>&, Shape, Device);
template Tensor from_vector<bool>(const std::vector<bool>&, Shape, Device);
template Tensor from_vector<Half>(const std::vector<Half>&, Shape, Device);
template Tensor from_vector<BFloat16>(const std::vector<BFloat16>&, Shape, Device);

Tensor full(Shape shape, double value, DType dtype, Device device) {
#if GRADFLOW_WITH_CUDA
  if (device.is_cuda()) {  // filled on the device, no host buffer or copy
    Tensor out = empty(std::move(shape), dtype, device);
    cuda::fill(out, value);
    return out;
  }
#endif
  Tensor host = empty(std::move(shape), dtype, kCPU);
  int64_t n = host.numel();
  visit_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T v = convert<T>(value);
    T* out = static_cast<T*>(host.raw_data());
    for (int64_t i = 0; i < n; ++i) out[i] = v;
  });
  return device.is_cpu() ? host : host.to(device);
}

Tensor scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }
Tensor zeros(Shape shape, DType dtype, Device device) { return full(std::move(shape), 0.0, dtype, device); }
Tensor ones(Shape shape, DType dtype, Device device) { return full(std::move(shape), 1.0, dtype, device); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, t.dtype(), t.device()); }

Tensor arange(double start, double stop, double step, DType dtype, Device device) {
  if (step == 0) throw ValueError("arange: step must not be 0");
  double span = std::ceil((stop - start) / step);
  int64_t n = span > 0 ? static_cast<int64_t>(span) : 0;
#if GRADFLOW_WITH_CUDA
  if (device.is_cuda()) {
    Tensor out = empty({n}, dtype, device);
    cuda::fill_arange(out, start, step);
    return out;
  }
#endif
  Tensor host = empty({n}, dtype, kCPU);
  visit_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* out = static_cast<T*>(host.raw_data());
    for (int64_t i = 0; i < n; ++i) out[i] = convert<T>(start + static_cast<double>(i) * step);
  });
  return device.is_cpu() ? host : host.to(device);
}

}  // namespace gradflow
