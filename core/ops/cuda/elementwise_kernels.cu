// Elementwise kernels: one functor per op (the same formulas as cpu/elementwise_cpu.cc), applied by a
// strided binary or unary kernel. Kernels and functors first, then the launchers.
#include "core/ops/cuda/elementwise_kernels.h"

#include <cstdint>
#include <initializer_list>

#include "core/ops/integer_power.h"
#include "core/tensor/cuda/kernel_common.cuh"

namespace gradflow::cuda {
namespace {

template <typename C>
inline constexpr bool kIsInt = ::cuda::std::is_integral_v<C>;

// Integer arithmetic goes through the unsigned type, so overflow wraps instead of being undefined.
template <typename C, typename F>
__device__ __forceinline__ C wrapping(C a, C b, F f) {
  using U = ::cuda::std::make_unsigned_t<C>;
  return static_cast<C>(static_cast<U>(f(static_cast<U>(a), static_cast<U>(b))));
}


// ---- binary functors, on the compute type C ----
struct Add {
  template <typename C>
  __device__ C operator()(C a, C b) const {
    if constexpr (kIsInt<C>) return wrapping(a, b, [](auto x, auto y) { return x + y; });
    else return a + b;
  }
};
struct Sub {
  template <typename C>
  __device__ C operator()(C a, C b) const {
    if constexpr (kIsInt<C>) return wrapping(a, b, [](auto x, auto y) { return x - y; });
    else return a - b;
  }
};
struct Mul {
  template <typename C>
  __device__ C operator()(C a, C b) const {
    if constexpr (kIsInt<C>) return wrapping(a, b, [](auto x, auto y) { return x * y; });
    else return a * b;
  }
};
struct Div {
  // Integer division by zero gives 0 (as NumPy) and MIN / -1 wraps, as on the CPU.
  template <typename C>
  __device__ C operator()(C a, C b) const {
    if constexpr (kIsInt<C>) {
      if (b == 0) return 0;
      if constexpr (::cuda::std::is_signed_v<C>) {
        if (b == -1) return wrapping(C(0), a, [](auto x, auto y) { return x - y; });
      }
      return static_cast<C>(a / b);
    } else {
      return a / b;
    }
  }
};
struct Pow {
  template <typename C>
  __device__ C operator()(C a, C b) const {
    if constexpr (kIsInt<C>) return integer_power(a, b);
    else if constexpr (::cuda::std::is_same_v<C, float>) return powf(a, b);
    else return static_cast<C>(pow(static_cast<double>(a), static_cast<double>(b)));
  }
};
struct Maximum {
  template <typename C>
  __device__ C operator()(C a, C b) const { return (a >= b || is_nan(a)) ? a : b; }
};
struct Minimum {
  template <typename C>
  __device__ C operator()(C a, C b) const { return (a <= b || is_nan(a)) ? a : b; }
};
#define GF_COMPARE(Name, expr)                                    \
  struct Name {                                                   \
    template <typename C>                                         \
    __device__ bool operator()(C a, C b) const { return expr; }   \
  };
GF_COMPARE(Equal, a == b)
GF_COMPARE(NotEqual, a != b)
GF_COMPARE(Less, a < b)
GF_COMPARE(LessEqual, a <= b)
GF_COMPARE(Greater, a > b)
GF_COMPARE(GreaterEqual, a >= b)
GF_COMPARE(LogicalAnd, a && b)
GF_COMPARE(LogicalOr, a || b)
#undef GF_COMPARE

// ---- unary functors ----
struct Neg {
  template <typename C>
  __device__ C operator()(C x) const {
    if constexpr (kIsInt<C>) return wrapping(C(0), x, [](auto a, auto b) { return a - b; });
    else return -x;
  }
};
struct Abs {
  template <typename C>
  __device__ C operator()(C x) const {
    if constexpr (::cuda::std::is_unsigned_v<C>) return x;
    else if constexpr (kIsInt<C>) return x < 0 ? Neg{}(x) : x;
    else return m_abs(x);
  }
};
struct Square {
  template <typename C>
  __device__ C operator()(C x) const { return Mul{}(x, x); }
};
struct Sign {
  template <typename C>
  __device__ C operator()(C x) const {
    if constexpr (::cuda::std::is_unsigned_v<C>) return static_cast<C>(x > 0);
    else return static_cast<C>((C(0) < x) - (x < C(0)));
  }
};
struct Relu {
  template <typename C>
  __device__ C operator()(C x) const { return x > C(0) ? x : C(0); }
};
struct Exp { template <typename C> __device__ C operator()(C x) const { return m_exp(x); } };
struct Log { template <typename C> __device__ C operator()(C x) const { return m_log(x); } };
struct Sqrt { template <typename C> __device__ C operator()(C x) const { return m_sqrt(x); } };
struct Rsqrt { template <typename C> __device__ C operator()(C x) const { return C(1) / m_sqrt(x); } };
struct Tanh { template <typename C> __device__ C operator()(C x) const { return m_tanh(x); } };
struct Erf { template <typename C> __device__ C operator()(C x) const { return m_erf(x); } };
struct Sigmoid {
  template <typename C>
  __device__ C operator()(C x) const {
    if (x >= C(0)) return C(1) / (C(1) + m_exp(-x));  // both branches avoid exp overflow
    C e = m_exp(x);
    return e / (C(1) + e);
  }
};
struct Softplus {
  template <typename C>
  __device__ C operator()(C x) const { return (x > C(0) ? x : C(0)) + m_log1p(m_exp(-m_abs(x))); }
};
struct GeluExact {
  template <typename C>
  __device__ C operator()(C x) const { return C(0.5) * x * (C(1) + m_erf(x * C(0.7071067811865476))); }
};
struct GeluTanh {
  template <typename C>
  __device__ C operator()(C x) const {
    return C(0.5) * x * (C(1) + m_tanh(C(0.7978845608028654) * (x + C(0.044715) * x * x * x)));
  }
};
struct LogicalNot {
  __device__ bool operator()(bool x) const { return !x; }
};

// ---- kernels ----
// out (type R) = f(a, b) with a, b of type T computed in Compute<T>.
template <typename T, typename R, typename F>
__global__ void binary_kernel(R* out, const T* a, const T* b, StridedIndex<3> ix, int64_t n) {
  F f;
  GF_GRID_STRIDE_LOOP(i, n) {
    int64_t off[3];
    offsets(ix, i, off);
    auto v = f(load(a[off[1]]), load(b[off[2]]));
    if constexpr (::cuda::std::is_same_v<R, bool>) {
      out[off[0]] = v;
    } else {
      out[off[0]] = store<R>(v);
    }
  }
}

template <typename T, typename F>
__global__ void unary_kernel(T* out, const T* x, StridedIndex<2> ix, int64_t n) {
  F f;
  GF_GRID_STRIDE_LOOP(i, n) {
    int64_t off[2];
    offsets(ix, i, off);
    out[off[0]] = store<T>(f(load(x[off[1]])));
  }
}

// Contiguous operands (one merged dimension of stride 1) at 16-byte aligned addresses: each thread moves
// 16 bytes of each operand per step (kVec elements), as memcpy does; the same f per element as above.
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

template <typename T, typename F, int kVec>
__global__ void binary_dense_kernel(T* out, const T* a, const T* b, int64_t n) {
  using P = Pack<T, kVec>;
  F f;
  const int64_t packs = n / kVec;
  GF_GRID_STRIDE_LOOP(p, packs) {
    const P x = reinterpret_cast<const P*>(a)[p];
    const P y = reinterpret_cast<const P*>(b)[p];
    P r;
GF_UNROLL
    for (int k = 0; k < kVec; ++k) r.v[k] = store<T>(f(load(x.v[k]), load(y.v[k])));
    reinterpret_cast<P*>(out)[p] = r;
  }
  GF_GRID_STRIDE_LOOP(i, n - packs * kVec) {
    const int64_t j = packs * kVec + i;
    out[j] = store<T>(f(load(a[j]), load(b[j])));
  }
}

template <typename T, typename F, int kVec>
__global__ void unary_dense_kernel(T* out, const T* x, int64_t n) {
  using P = Pack<T, kVec>;
  F f;
  const int64_t packs = n / kVec;
  GF_GRID_STRIDE_LOOP(p, packs) {
    const P v = reinterpret_cast<const P*>(x)[p];
    P r;
GF_UNROLL
    for (int k = 0; k < kVec; ++k) r.v[k] = store<T>(f(load(v.v[k])));
    reinterpret_cast<P*>(out)[p] = r;
  }
  GF_GRID_STRIDE_LOOP(i, n - packs * kVec) {
    const int64_t j = packs * kVec + i;
    out[j] = store<T>(f(load(x[j])));
  }
}

// Whether every operand of ix is contiguous and every pointer 16-byte aligned (the dense kernels).
template <int N>
bool dense(const StridedIndex<N>& ix, std::initializer_list<const void*> pointers) {
  if (ix.rank != 1) return false;
  for (int k = 0; k < N; ++k) {
    if (ix.strides[k][0] != 1) return false;
  }
  for (const void* p : pointers) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  }
  return true;
}

template <typename T>
__global__ void clip_kernel(T* out, const T* x, Compute<T> lo, Compute<T> hi, StridedIndex<2> ix, int64_t n) {
  GF_GRID_STRIDE_LOOP(i, n) {
    int64_t off[2];
    offsets(ix, i, off);
    Compute<T> v = load(x[off[1]]);
    out[off[0]] = store<T>(v < lo ? lo : (v > hi ? hi : v));
  }
}

// ---- typed launch helpers ----
enum class Family { kArithmetic, kCompare, kLogical };

template <typename F, Family kFamily>
cudaError_t binary(cudaStream_t stream, ScalarType type, void* out, const void* a, const void* b,
                   const StridedIndex<3>& ix, int64_t n) {
  auto launch = [&](auto tag) {
    using T = typename decltype(tag)::type;
    using R = ::cuda::std::conditional_t<kFamily == Family::kArithmetic, T, bool>;
    if constexpr (kFamily == Family::kArithmetic && 16 % sizeof(T) == 0) {
      if (dense(ix, {out, a, b})) {
        constexpr int kVec = 16 / sizeof(T);
        binary_dense_kernel<T, F, kVec><<<grid_for(n / kVec > 0 ? n / kVec : 1), kBlock, 0, stream>>>(
            static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), n);
        return cudaGetLastError();
      }
    }
    binary_kernel<T, R, F><<<grid_for(n), kBlock, 0, stream>>>(static_cast<R*>(out), static_cast<const T*>(a),
                                                               static_cast<const T*>(b), ix, n);
    return cudaGetLastError();
  };
  if constexpr (kFamily == Family::kArithmetic) return visit_numeric(type, launch);
  else if constexpr (kFamily == Family::kCompare) return visit_all(type, launch);
  else return type == ScalarType::kBool ? launch(Tag<bool>{}) : cudaErrorInvalidValue;
}

enum class Domain { kNumeric, kFloat, kBool };

template <typename F, Domain kDomain>
cudaError_t unary(cudaStream_t stream, ScalarType type, void* out, const void* x, const StridedIndex<2>& ix,
                  int64_t n) {
  auto launch = [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (16 % sizeof(T) == 0) {
      if (dense(ix, {out, x})) {
        constexpr int kVec = 16 / sizeof(T);
        unary_dense_kernel<T, F, kVec><<<grid_for(n / kVec > 0 ? n / kVec : 1), kBlock, 0, stream>>>(
            static_cast<T*>(out), static_cast<const T*>(x), n);
        return cudaGetLastError();
      }
    }
    unary_kernel<T, F><<<grid_for(n), kBlock, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(x), ix, n);
    return cudaGetLastError();
  };
  if constexpr (kDomain == Domain::kNumeric) return visit_numeric(type, launch);
  else if constexpr (kDomain == Domain::kFloat) return visit_float(type, launch);
  else return type == ScalarType::kBool ? launch(Tag<bool>{}) : cudaErrorInvalidValue;
}

}  // namespace

cudaError_t launch_binary(cudaStream_t stream, BinaryOp op, ScalarType type, void* out, const void* a, const void* b,
                          const StridedIndex<3>& ix, int64_t n) {
  if (n == 0) return cudaSuccess;
  constexpr Family kA = Family::kArithmetic, kC = Family::kCompare, kL = Family::kLogical;
  switch (op) {
    case BinaryOp::kAdd: return binary<Add, kA>(stream, type, out, a, b, ix, n);
    case BinaryOp::kSub: return binary<Sub, kA>(stream, type, out, a, b, ix, n);
    case BinaryOp::kMul: return binary<Mul, kA>(stream, type, out, a, b, ix, n);
    case BinaryOp::kDiv: return binary<Div, kA>(stream, type, out, a, b, ix, n);
    case BinaryOp::kPow: return binary<Pow, kA>(stream, type, out, a, b, ix, n);
    case BinaryOp::kMaximum: return binary<Maximum, kA>(stream, type, out, a, b, ix, n);
    case BinaryOp::kMinimum: return binary<Minimum, kA>(stream, type, out, a, b, ix, n);
    case BinaryOp::kEqual: return binary<Equal, kC>(stream, type, out, a, b, ix, n);
    case BinaryOp::kNotEqual: return binary<NotEqual, kC>(stream, type, out, a, b, ix, n);
    case BinaryOp::kLess: return binary<Less, kC>(stream, type, out, a, b, ix, n);
    case BinaryOp::kLessEqual: return binary<LessEqual, kC>(stream, type, out, a, b, ix, n);
    case BinaryOp::kGreater: return binary<Greater, kC>(stream, type, out, a, b, ix, n);
    case BinaryOp::kGreaterEqual: return binary<GreaterEqual, kC>(stream, type, out, a, b, ix, n);
    case BinaryOp::kLogicalAnd: return binary<LogicalAnd, kL>(stream, type, out, a, b, ix, n);
    case BinaryOp::kLogicalOr: return binary<LogicalOr, kL>(stream, type, out, a, b, ix, n);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_unary(cudaStream_t stream, UnaryOp op, ScalarType type, void* out, const void* x,
                         const StridedIndex<2>& ix, int64_t n) {
  if (n == 0) return cudaSuccess;
  constexpr Domain kN = Domain::kNumeric, kF = Domain::kFloat;
  switch (op) {
    case UnaryOp::kNeg: return unary<Neg, kN>(stream, type, out, x, ix, n);
    case UnaryOp::kAbs: return unary<Abs, kN>(stream, type, out, x, ix, n);
    case UnaryOp::kSquare: return unary<Square, kN>(stream, type, out, x, ix, n);
    case UnaryOp::kSign: return unary<Sign, kN>(stream, type, out, x, ix, n);
    case UnaryOp::kRelu: return unary<Relu, kN>(stream, type, out, x, ix, n);
    case UnaryOp::kExp: return unary<Exp, kF>(stream, type, out, x, ix, n);
    case UnaryOp::kLog: return unary<Log, kF>(stream, type, out, x, ix, n);
    case UnaryOp::kSqrt: return unary<Sqrt, kF>(stream, type, out, x, ix, n);
    case UnaryOp::kRsqrt: return unary<Rsqrt, kF>(stream, type, out, x, ix, n);
    case UnaryOp::kTanh: return unary<Tanh, kF>(stream, type, out, x, ix, n);
    case UnaryOp::kSigmoid: return unary<Sigmoid, kF>(stream, type, out, x, ix, n);
    case UnaryOp::kSoftplus: return unary<Softplus, kF>(stream, type, out, x, ix, n);
    case UnaryOp::kErf: return unary<Erf, kF>(stream, type, out, x, ix, n);
    case UnaryOp::kGeluExact: return unary<GeluExact, kF>(stream, type, out, x, ix, n);
    case UnaryOp::kGeluTanh: return unary<GeluTanh, kF>(stream, type, out, x, ix, n);
    case UnaryOp::kLogicalNot: return unary<LogicalNot, Domain::kBool>(stream, type, out, x, ix, n);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_clip(cudaStream_t stream, ScalarType type, void* out, const void* x, double lo, double hi,
                        const StridedIndex<2>& ix, int64_t n) {
  if (n == 0) return cudaSuccess;
  return visit_numeric(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = Compute<T>;
    clip_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(x),
                                                      static_cast<C>(lo), static_cast<C>(hi), ix, n);
    return cudaGetLastError();
  });
}

}  // namespace gradflow::cuda
