// CPU kernels of the elementwise ops: one functor per op, run by strided loops that vectorize when the
// operands are contiguous.
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/ops/cpu/strided_loop.h"
#include "core/ops/integer_power.h"
#include "core/ops/internal.h"

namespace gradflow {
namespace {

template <typename R, typename T, typename F>
void binary_loop(const Tensor& a, const Tensor& b, const Tensor& out, F f) {
  const T* pa = static_cast<const T*>(a.raw_data());
  const T* pb = static_cast<const T*>(b.raw_data());
  R* po = static_cast<R*>(out.raw_data());
  std::array<Strides, 3> strides{out.strides(), broadcast_strides(a, out.shape()), broadcast_strides(b, out.shape())};
  cpu::for_each_run<3>(out.shape(), strides, [&](const auto& off, const auto& s, int64_t n) {
    R* o = po + off[0];
    const T* x = pa + off[1];
    const T* y = pb + off[2];
    if (s[0] == 1 && s[1] == 1 && s[2] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
    } else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {
      const T yv = *y;
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], yv);
    } else if (s[0] == 1 && s[1] == 0 && s[2] == 1) {
      const T xv = *x;
      for (int64_t i = 0; i < n; ++i) o[i] = f(xv, y[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * s[0]] = f(x[i * s[1]], y[i * s[2]]);
    }
  });
}

template <typename R, typename T, typename F>
void unary_loop(const Tensor& a, const Tensor& out, F f) {
  const T* pa = static_cast<const T*>(a.raw_data());
  R* po = static_cast<R*>(out.raw_data());
  std::array<Strides, 2> strides{out.strides(), a.strides()};
  cpu::for_each_run<2>(out.shape(), strides, [&](const auto& off, const auto& s, int64_t n) {
    R* o = po + off[0];
    const T* x = pa + off[1];
    if (s[0] == 1 && s[1] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * s[0]] = f(x[i * s[1]]);
    }
  });
}

// ---- functors: integer arithmetic wraps through the unsigned type, never traps ----
template <typename T>
T wrap(auto v) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(static_cast<std::make_unsigned_t<T>>(v));
  } else {
    return static_cast<T>(v);
  }
}
struct Add { template <typename T> T operator()(T a, T b) const { return wrap<T>(a + b); } };
struct Sub { template <typename T> T operator()(T a, T b) const { return wrap<T>(a - b); } };
struct Mul { template <typename T> T operator()(T a, T b) const { return wrap<T>(a * b); } };
struct Div {
  // Integer division by zero gives 0 (as NumPy) instead of a SIGFPE; MIN / -1 wraps.
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      if (b == 0) return 0;
      if constexpr (std::is_signed_v<T>) {
        if (b == -1) return wrap<T>(-static_cast<std::make_unsigned_t<T>>(a));
      }
      return static_cast<T>(a / b);
    } else {
      return a / b;
    }
  }
};
struct Pow {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) return integer_power(a, b);
    else return static_cast<T>(std::pow(a, b));
  }
};
struct Maximum { template <typename T> T operator()(T a, T b) const { return (a >= b || a != a) ? a : b; } };
struct Minimum { template <typename T> T operator()(T a, T b) const { return (a <= b || a != a) ? a : b; } };
struct Equal { template <typename T> bool operator()(T a, T b) const { return a == b; } };
struct NotEqual { template <typename T> bool operator()(T a, T b) const { return a != b; } };
struct Less { template <typename T> bool operator()(T a, T b) const { return a < b; } };
struct LessEqual { template <typename T> bool operator()(T a, T b) const { return a <= b; } };
struct Greater { template <typename T> bool operator()(T a, T b) const { return a > b; } };
struct GreaterEqual { template <typename T> bool operator()(T a, T b) const { return a >= b; } };
struct LogicalAnd { bool operator()(bool a, bool b) const { return a && b; } };
struct LogicalOr { bool operator()(bool a, bool b) const { return a || b; } };

struct Neg { template <typename T> T operator()(T x) const { return wrap<T>(-x); } };
struct Abs { template <typename T> T operator()(T x) const { return x < 0 ? wrap<T>(-x) : x; } };
struct Square { template <typename T> T operator()(T x) const { return wrap<T>(x * x); } };
struct Sign { template <typename T> T operator()(T x) const { return static_cast<T>((T(0) < x) - (x < T(0))); } };
struct Relu { template <typename T> T operator()(T x) const { return x > T(0) ? x : T(0); } };
struct Exp { template <typename T> T operator()(T x) const { return std::exp(x); } };
struct Log { template <typename T> T operator()(T x) const { return std::log(x); } };
struct Sqrt { template <typename T> T operator()(T x) const { return std::sqrt(x); } };
struct Rsqrt { template <typename T> T operator()(T x) const { return T(1) / std::sqrt(x); } };
struct Tanh { template <typename T> T operator()(T x) const { return std::tanh(x); } };
struct Erf { template <typename T> T operator()(T x) const { return std::erf(x); } };
struct Sigmoid {
  template <typename T>
  T operator()(T x) const {
    // Both branches avoid exp overflow.
    if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
    T e = std::exp(x);
    return e / (T(1) + e);
  }
};
struct Softplus {
  template <typename T>
  T operator()(T x) const { return std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x))); }
};
struct GeluExact {
  template <typename T>
  T operator()(T x) const { return T(0.5) * x * (T(1) + std::erf(x * T(0.7071067811865476))); }
};
struct GeluTanh {
  template <typename T>
  T operator()(T x) const {
    return T(0.5) * x * (T(1) + std::tanh(T(0.7978845608028654) * (x + T(0.044715) * x * x * x)));
  }
};

template <typename F, bool kBoolResult = false>
TensorList binary_kernel(const TensorList& in, const Attrs&, const MetaList& metas) {
  Tensor out = empty(metas[0]);
  visit_numeric(metas[0].dtype == kBool ? "compare" : "binary", in[0].dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using R = std::conditional_t<kBoolResult, bool, T>;
    binary_loop<R, T>(in[0], in[1], out, F{});
  });
  return {out};
}

template <typename F>
TensorList logical_kernel(const TensorList& in, const Attrs&, const MetaList& metas) {
  Tensor out = empty(metas[0]);
  binary_loop<bool, bool>(in[0], in[1], out, F{});
  return {out};
}

TensorList logical_not_kernel(const TensorList& in, const Attrs&, const MetaList& metas) {
  Tensor out = empty(metas[0]);
  unary_loop<bool, bool>(in[0], out, [](bool x) { return !x; });
  return {out};
}

template <typename F>
TensorList unary_numeric_kernel(const TensorList& in, const Attrs&, const MetaList& metas) {
  Tensor out = empty(metas[0]);
  visit_numeric("unary", in[0].dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_loop<T, T>(in[0], out, F{});
  });
  return {out};
}

template <typename F>
TensorList unary_float_kernel(const TensorList& in, const Attrs&, const MetaList& metas) {
  Tensor out = empty(metas[0]);
  visit_float("unary", in[0].dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_loop<T, T>(in[0], out, F{});
  });
  return {out};
}

TensorList gelu_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  return attrs.get_or<bool>("approximate", false) ? unary_float_kernel<GeluTanh>(in, attrs, metas)
                                                   : unary_float_kernel<GeluExact>(in, attrs, metas);
}

TensorList clip_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  Tensor out = empty(metas[0]);
  double lo = attrs.get<double>("lo"), hi = attrs.get<double>("hi");
  visit_numeric("clip", in[0].dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T l = static_cast<T>(lo), h = static_cast<T>(hi);
    unary_loop<T, T>(in[0], out, [l, h](T x) { return x < l ? l : (x > h ? h : x); });
  });
  return {out};
}

TensorList where_kernel(const TensorList& in, const Attrs&, const MetaList& metas) {
  Tensor out = empty(metas[0]);
  const Shape& shape = out.shape();
  const bool* pc = static_cast<const bool*>(in[0].raw_data());
  visit_all(out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = static_cast<const T*>(in[1].raw_data());
    const T* pb = static_cast<const T*>(in[2].raw_data());
    T* po = static_cast<T*>(out.raw_data());
    std::array<Strides, 4> strides{out.strides(), broadcast_strides(in[0], shape), broadcast_strides(in[1], shape),
                                   broadcast_strides(in[2], shape)};
    cpu::for_each_run<4>(shape, strides, [&](const auto& off, const auto& s, int64_t n) {
      T* o = po + off[0];
      // Read as bytes: GCC vectorizes a select on `byte != 0`, not on a bool.
      const uint8_t* c = reinterpret_cast<const uint8_t*>(pc + off[1]);
      const T* x = pa + off[2];
      const T* y = pb + off[3];
      // Unit strides (a broadcast scalar for either branch): both values loaded, then a select, which
      // vectorizes (out is a new tensor, so it aliases no input); the strided loop's data-dependent
      // branch mispredicted on masks like dropout's and relu's (6-7 ns an element).
      auto select = [&](auto x_at, auto y_at) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) {
          const T xi = x_at(i), yi = y_at(i);
          o[i] = c[i] != 0 ? xi : yi;
        }
      };
      auto element = [](const T* p) { return [p](int64_t i) { return p[i]; }; };
      auto broadcast = [](const T* p) { return [v = *p](int64_t) { return v; }; };
      if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1) {
        select(element(x), element(y));
      } else if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 0) {
        select(element(x), broadcast(y));
      } else if (s[0] == 1 && s[1] == 1 && s[2] == 0 && s[3] == 1) {
        select(broadcast(x), element(y));
      } else {
        for (int64_t i = 0; i < n; ++i) o[i * s[0]] = c[i * s[1]] ? x[i * s[2]] : y[i * s[3]];
      }
    });
  });
  return {out};
}

}  // namespace

void register_elementwise_cpu_kernels(OpRegistry& r) {
  constexpr DeviceType kDev = DeviceType::kCPU;
  r.set_kernel("add", kDev, binary_kernel<Add>);
  r.set_kernel("sub", kDev, binary_kernel<Sub>);
  r.set_kernel("mul", kDev, binary_kernel<Mul>);
  r.set_kernel("div", kDev, binary_kernel<Div>);
  r.set_kernel("pow", kDev, binary_kernel<Pow>);
  r.set_kernel("maximum", kDev, binary_kernel<Maximum>);
  r.set_kernel("minimum", kDev, binary_kernel<Minimum>);
  r.set_kernel("equal", kDev, binary_kernel<Equal, true>);
  r.set_kernel("not_equal", kDev, binary_kernel<NotEqual, true>);
  r.set_kernel("less", kDev, binary_kernel<Less, true>);
  r.set_kernel("less_equal", kDev, binary_kernel<LessEqual, true>);
  r.set_kernel("greater", kDev, binary_kernel<Greater, true>);
  r.set_kernel("greater_equal", kDev, binary_kernel<GreaterEqual, true>);
  r.set_kernel("logical_and", kDev, logical_kernel<LogicalAnd>);
  r.set_kernel("logical_or", kDev, logical_kernel<LogicalOr>);
  r.set_kernel("logical_not", kDev, logical_not_kernel);
  r.set_kernel("neg", kDev, unary_numeric_kernel<Neg>);
  r.set_kernel("abs", kDev, unary_numeric_kernel<Abs>);
  r.set_kernel("square", kDev, unary_numeric_kernel<Square>);
  r.set_kernel("sign", kDev, unary_numeric_kernel<Sign>);
  r.set_kernel("relu", kDev, unary_numeric_kernel<Relu>);
  r.set_kernel("clip", kDev, clip_kernel);
  r.set_kernel("exp", kDev, unary_float_kernel<Exp>);
  r.set_kernel("log", kDev, unary_float_kernel<Log>);
  r.set_kernel("sqrt", kDev, unary_float_kernel<Sqrt>);
  r.set_kernel("rsqrt", kDev, unary_float_kernel<Rsqrt>);
  r.set_kernel("tanh", kDev, unary_float_kernel<Tanh>);
  r.set_kernel("sigmoid", kDev, unary_float_kernel<Sigmoid>);
  r.set_kernel("softplus", kDev, unary_float_kernel<Softplus>);
  r.set_kernel("erf", kDev, unary_float_kernel<Erf>);
  r.set_kernel("gelu", kDev, gelu_kernel);
  r.set_kernel("where", kDev, where_kernel);
}

}  // namespace gradflow
