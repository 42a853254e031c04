// CPU reductions. The input is viewed as [outer, reduced] (reduced axes trailing) or [reduced, inner]
// (reduced axes leading) without copying when its layout allows, else copied into [outer, reduced].
// Float sums accumulate in double.
#include <cmath>
#include <limits>
#include <numeric>

#include "core/ops/cpu/strided_loop.h"
#include "core/ops/internal.h"

namespace gradflow {
namespace {

template <typename T>
using SumAcc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

template <typename T>
struct SumR {
  using Acc = SumAcc<T>;
  Acc init() const { return 0; }
  Acc step(Acc a, T v) const { return a + static_cast<Acc>(v); }
  T finish(Acc a, int64_t) const { return static_cast<T>(a); }
};
template <typename T>
struct MeanR : SumR<T> {
  T finish(typename SumR<T>::Acc a, int64_t n) const {
    return n == 0 ? static_cast<T>(std::numeric_limits<double>::quiet_NaN()) : static_cast<T>(a / static_cast<double>(n));
  }
};
template <typename T>
struct MaxR {
  using Acc = T;
  // -inf for floats, so the max of an all -inf input is -inf rather than -FLT_MAX.
  Acc init() const {
    return std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::lowest();
  }
  Acc step(Acc a, T v) const { return (v > a || v != v) && a == a ? v : a; }  // NaN wins
  T finish(Acc a, int64_t) const { return a; }
};
template <typename T>
struct MinR {
  using Acc = T;
  Acc init() const {
    return std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::max();
  }
  Acc step(Acc a, T v) const { return (v < a || v != v) && a == a ? v : a; }
  T finish(Acc a, int64_t) const { return a; }
};

struct Plan {
  Tensor x;          // contiguous
  bool trailing;     // x is [outer, reduced] (else [reduced, inner])
  int64_t outer, reduced;
};

// Arranges x so the reduced axes are contiguous at one end.
Plan make_plan(const Tensor& x, absl::Span<const int> axes) {
  int rank = x.rank();
  std::vector<bool> is_reduced(rank, false);
  for (int a : axes) is_reduced[a] = true;
  int64_t reduced = 1;
  for (int a : axes) reduced *= x.shape()[a];
  int64_t kept = reduced == 0 ? 0 : x.numel() / std::max<int64_t>(reduced, 1);
  if (reduced == 0) {
    kept = 1;
    for (int d = 0; d < rank; ++d) kept *= is_reduced[d] ? 1 : x.shape()[d];
  }
  int k = static_cast<int>(axes.size());
  bool reduced_trailing = true, reduced_leading = true;
  for (int d = 0; d < rank; ++d) {
    if (is_reduced[d] != (d >= rank - k)) reduced_trailing = false;
    if (is_reduced[d] != (d < k)) reduced_leading = false;
  }
  if (x.is_contiguous() && reduced_trailing) return {x, true, kept, reduced};
  if (x.is_contiguous() && reduced_leading) return {x, false, kept, reduced};
  Shape shape;
  Strides strides;
  for (int pass = 0; pass < 2; ++pass) {
    for (int d = 0; d < rank; ++d) {
      if (is_reduced[d] == (pass == 1)) {
        shape.push_back(x.shape()[d]);
        strides.push_back(x.strides()[d]);
      }
    }
  }
  return {contiguous_kernel(make_view(x, shape, strides, x.offset())), true, kept, reduced};
}

template <typename T, typename R>
void run_reduce(const Plan& p, T* out, R r) {
  const T* x = static_cast<const T*>(p.x.raw_data());
  const int64_t outer = p.outer, n = p.reduced;
  if (p.trailing) {
#pragma omp parallel for if (outer > 1 && outer * n > cpu::kParallelGrain)
    for (int64_t o = 0; o < outer; ++o) {
      auto acc = r.init();
      const T* row = x + o * n;
      for (int64_t i = 0; i < n; ++i) acc = r.step(acc, row[i]);
      out[o] = r.finish(acc, n);
    }
    return;
  }
  // [reduced, outer]: accumulate whole rows so the inner loop runs over contiguous memory.
  using Acc = decltype(r.init());
  std::vector<Acc> acc(outer, r.init());
  for (int64_t i = 0; i < n; ++i) {
    const T* row = x + i * outer;
    for (int64_t o = 0; o < outer; ++o) acc[o] = r.step(acc[o], row[o]);
  }
  for (int64_t o = 0; o < outer; ++o) out[o] = r.finish(acc[o], n);
}

template <template <typename> class R>
TensorList reduce_kernel(const TensorList& in, const Attrs& a, const MetaList& m) {
  const Tensor& x = in[0];
  Tensor out = empty(m[0]);
  Plan p = make_plan(x, normalize_axes("reduce", a.get<std::vector<int64_t>>("axes"), x.rank()));
  visit_numeric("reduce", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_reduce(p, static_cast<T*>(out.raw_data()), R<T>{});
  });
  return {out};
}

TensorList logsumexp_kernel(const TensorList& in, const Attrs& a, const MetaList& m) {
  const Tensor& x = in[0];
  Tensor out = empty(m[0]);
  Plan p = make_plan(x, normalize_axes("logsumexp", a.get<std::vector<int64_t>>("axes"), x.rank()));
  if (!p.trailing) {  // make the reduced axes trailing: [reduced, outer] -> [outer, reduced]
    p.x = contiguous_kernel(make_view(p.x, {p.outer, p.reduced}, {1, p.outer}, p.x.offset()));
    p.trailing = true;
  }
  visit_float("logsumexp", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(p.x.raw_data());
    T* po = static_cast<T*>(out.raw_data());
#pragma omp parallel for if (p.outer > 1 && p.outer * p.reduced > cpu::kParallelGrain)
    for (int64_t o = 0; o < p.outer; ++o) {
      const T* row = px + o * p.reduced;
      T hi = -std::numeric_limits<T>::infinity();
      for (int64_t i = 0; i < p.reduced; ++i) hi = std::max(hi, row[i]);
      if (!std::isfinite(hi)) {
        po[o] = hi;  // all -inf (or +inf / nan present)
        continue;
      }
      double s = 0;
      for (int64_t i = 0; i < p.reduced; ++i) s += std::exp(static_cast<double>(row[i] - hi));
      po[o] = static_cast<T>(std::log(s) + hi);
    }
  });
  return {out};
}

TensorList argmax_kernel(const TensorList& in, const Attrs& a, const MetaList& m) {
  const Tensor& x = in[0];
  int axis = normalize_axis("argmax", a.get<int64_t>("axis"), x.rank());
  Tensor out = empty(m[0]);
  int axes[] = {axis};
  Plan p = make_plan(x, axes);
  if (!p.trailing) {
    p.x = contiguous_kernel(make_view(p.x, {p.outer, p.reduced}, {1, p.outer}, p.x.offset()));
  }
  int64_t* po = static_cast<int64_t*>(out.raw_data());
  visit_numeric("argmax", x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(p.x.raw_data());
    for (int64_t o = 0; o < p.outer; ++o) {
      const T* row = px + o * p.reduced;
      int64_t best = 0;
      for (int64_t i = 1; i < p.reduced; ++i) {
        if (row[i] > row[best] || (row[i] != row[i] && row[best] == row[best])) best = i;  // first max; NaN wins
      }
      po[o] = best;
    }
  });
  return {out};
}

}  // namespace

void register_reduce_cpu_kernels(OpRegistry& r) {
  r.set_kernel("sum", DeviceType::kCPU, reduce_kernel<SumR>);
  r.set_kernel("mean", DeviceType::kCPU, reduce_kernel<MeanR>);
  r.set_kernel("max", DeviceType::kCPU, reduce_kernel<MaxR>);
  r.set_kernel("min", DeviceType::kCPU, reduce_kernel<MinR>);
  r.set_kernel("logsumexp", DeviceType::kCPU, logsumexp_kernel);
  r.set_kernel("argmax", DeviceType::kCPU, argmax_kernel);
}

}  // namespace gradflow
