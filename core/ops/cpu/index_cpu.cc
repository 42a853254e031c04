// CPU kernels for concat, gather and scatter_add. Indices are validated first, so a bad index is a
// ValueError naming it, never an out-of-bounds read.
#include <cstring>

#include "core/ops/cpu/strided_loop.h"
#include "core/ops/index_layout.h"
#include "core/ops/internal.h"
#include "core/tensor/creation.h"

namespace gradflow {
namespace {

TensorList gather_kernel(const TensorList& in, const Attrs& a, const MetaList& m) {
  Tensor params = in[0].is_contiguous() ? in[0] : contiguous_kernel(in[0]);
  int axis = normalize_axis("gather", a.get<int64_t>("axis"), params.rank());
  AxisSplit s = split_at(params.shape(), axis);
  std::vector<int64_t> ids = checked_indices("gather", in[1], s.n);
  Tensor out = empty(m[0]);
  size_t row_bytes = s.inner * dtype_size(params.dtype());
  const char* src = static_cast<const char*>(params.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  int64_t k = static_cast<int64_t>(ids.size());
#pragma omp parallel for if (s.outer * k * s.inner > cpu::kParallelGrain)
  for (int64_t o = 0; o < s.outer; ++o) {
    for (int64_t j = 0; j < k; ++j) {
      std::memcpy(dst + (o * k + j) * row_bytes, src + (o * s.n + ids[j]) * row_bytes, row_bytes);
    }
  }
  return {out};
}

TensorList scatter_add_kernel(const TensorList& in, const Attrs& a, const MetaList& m) {
  Tensor updates = in[0].is_contiguous() ? in[0] : contiguous_kernel(in[0]);
  Tensor out = zeros(m[0].shape, m[0].dtype);
  int axis = normalize_axis("scatter_add", a.get<int64_t>("axis"), out.rank());
  AxisSplit s = split_at(out.shape(), axis);
  std::vector<int64_t> ids = checked_indices("scatter_add", in[1], s.n);
  int64_t k = static_cast<int64_t>(ids.size());
  visit_numeric("scatter_add", out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pu = static_cast<const T*>(updates.raw_data());
    T* po = static_cast<T*>(out.raw_data());
    // Parallel over outer slices only: rows of one slice may repeat an index.
#pragma omp parallel for if (s.outer > 1 && s.outer * k * s.inner > cpu::kParallelGrain)
    for (int64_t o = 0; o < s.outer; ++o) {
      for (int64_t j = 0; j < k; ++j) {
        const T* row = pu + (o * k + j) * s.inner;
        T* target = po + (o * s.n + ids[j]) * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) target[i] += row[i];
      }
    }
  });
  return {out};
}

}  // namespace

void register_index_cpu_kernels(OpRegistry& r) {
  r.set_kernel("gather", DeviceType::kCPU, gather_kernel);
  r.set_kernel("scatter_add", DeviceType::kCPU, scatter_add_kernel);
}

}  // namespace gradflow
