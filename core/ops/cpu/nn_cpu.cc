// CPU kernels for softmax, log_softmax (over any axis, computed on rows of a [outer, axis] layout) and
// sparse softmax cross-entropy.
#include <cmath>
#include <limits>

#include "core/ops/cpu/strided_loop.h"
#include "core/ops/internal.h"

namespace gradflow {
namespace {

// x moved so `axis` is last and made contiguous: rows of length x.shape[axis].
struct Rows {
  Tensor x;
  std::vector<int64_t> perm;  // applied to x; identity when axis was already last
};

Rows rows_along(const Tensor& x, int axis) {
  std::vector<int64_t> perm;
  for (int d = 0; d < x.rank(); ++d) {
    if (d != axis) perm.push_back(d);
  }
  perm.push_back(axis);
  Shape s;
  Strides st;
  for (int64_t p : perm) {
    s.push_back(x.shape()[p]);
    st.push_back(x.strides()[p]);
  }
  Tensor v = make_view(x, s, st, x.offset());
  return {v.is_contiguous() ? v : contiguous_kernel(v), perm};
}

// Writes rows computed in the [outer, axis] layout back into the caller's layout.
Tensor restore_layout(const Tensor& rows_out, const Rows& r, const TensorMeta& meta) {
  Tensor out = empty(meta);
  Strides st(out.rank());
  for (size_t i = 0; i < r.perm.size(); ++i) st[i] = out.strides()[r.perm[i]];
  copy_into(make_view(out, rows_out.shape(), st, 0), rows_out);
  return out;
}

template <bool kLog>
TensorList softmax_kernel(const TensorList& in, const Attrs& a, const MetaList& m) {
  const Tensor& x = in[0];
  int axis = normalize_axis("softmax", a.get<int64_t>("axis"), x.rank());
  Rows r = rows_along(x, axis);
  Tensor y = empty(r.x.shape(), x.dtype());
  int64_t n = x.shape()[axis];
  int64_t outer = n == 0 ? 0 : x.numel() / n;
  visit_float("softmax", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(r.x.raw_data());
    T* py = static_cast<T*>(y.raw_data());
#pragma omp parallel for if (outer * n > cpu::kParallelGrain)
    for (int64_t o = 0; o < outer; ++o) {
      const T* row = px + o * n;
      T* out = py + o * n;
      T hi = -std::numeric_limits<T>::infinity();
      for (int64_t i = 0; i < n; ++i) hi = std::max(hi, row[i]);
      T total = 0;
      for (int64_t i = 0; i < n; ++i) total += std::exp(row[i] - hi);
      if constexpr (kLog) {
        T lse = hi + std::log(total);
        for (int64_t i = 0; i < n; ++i) out[i] = row[i] - lse;
      } else {
        for (int64_t i = 0; i < n; ++i) out[i] = std::exp(row[i] - hi) / total;
      }
    }
  });
  if (axis == x.rank() - 1) return {y};
  return {restore_layout(y, r, m[0])};
}

TensorList sparse_xent_kernel(const TensorList& in, const Attrs&, const MetaList& m) {
  const Tensor& labels = in[0];
  Tensor logits = in[1].is_contiguous() ? in[1] : contiguous_kernel(in[1]);
  int64_t batch = logits.dim(0), classes = logits.dim(1);
  std::vector<int64_t> ids = labels.to_vector<int64_t>();
  for (int64_t i = 0; i < batch; ++i) {
    if (ids[i] < 0 || ids[i] >= classes) {
      throw ValueError(str_cat("sparse_softmax_cross_entropy_with_logits: label ", ids[i], " at position ", i,
                                    " is outside [0, ", classes, ")"));
    }
  }
  Tensor out = empty(m[0]);
  visit_float("sparse_softmax_cross_entropy_with_logits", logits.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(logits.raw_data());
    T* po = static_cast<T*>(out.raw_data());
    for (int64_t b = 0; b < batch; ++b) {
      const T* row = px + b * classes;
      T hi = -std::numeric_limits<T>::infinity();
      for (int64_t i = 0; i < classes; ++i) hi = std::max(hi, row[i]);
      T total = 0;
      for (int64_t i = 0; i < classes; ++i) total += std::exp(row[i] - hi);
      po[b] = hi + std::log(total) - row[ids[b]];
    }
  });
  return {out};
}

}  // namespace

void register_nn_cpu_kernels(OpRegistry& r) {
  r.set_kernel("softmax", DeviceType::kCPU, softmax_kernel<false>);
  r.set_kernel("log_softmax", DeviceType::kCPU, softmax_kernel<true>);
  r.set_kernel("sparse_softmax_cross_entropy_with_logits", DeviceType::kCPU, sparse_xent_kernel);
}

}  // namespace gradflow
