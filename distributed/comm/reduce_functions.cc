#include "distributed/comm/reduce_functions.h"

#include <cstdint>
#include <type_traits>

namespace gradflow::distributed {
namespace {

template <typename T, bool = std::is_integral_v<T>>
struct ArithmeticOf {
  using type = T;
};
template <typename T>
struct ArithmeticOf<T, true> {
  using type = std::make_unsigned_t<T>;
};

template <typename T, ReduceOp kOp>
void apply(void* out, const void* a, const void* b, size_t n) {
  // Signed sums and products wrap through the unsigned type instead of overflowing (undefined in C++).
  using Arith = typename ArithmeticOf<T>::type;
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  T* z = static_cast<T*>(out);
  for (size_t i = 0; i < n; ++i) {
    if constexpr (kOp == ReduceOp::kSum) z[i] = static_cast<T>(static_cast<Arith>(x[i]) + static_cast<Arith>(y[i]));
    if constexpr (kOp == ReduceOp::kProd) z[i] = static_cast<T>(static_cast<Arith>(x[i]) * static_cast<Arith>(y[i]));
    if constexpr (kOp == ReduceOp::kMin) z[i] = y[i] < x[i] ? y[i] : x[i];
    if constexpr (kOp == ReduceOp::kMax) z[i] = x[i] < y[i] ? y[i] : x[i];
  }
}

template <typename T>
half_reduce::Fn function_of(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return &apply<T, ReduceOp::kSum>;
    case ReduceOp::kProd: return &apply<T, ReduceOp::kProd>;
    case ReduceOp::kMin: return &apply<T, ReduceOp::kMin>;
    case ReduceOp::kMax: return &apply<T, ReduceOp::kMax>;
    case ReduceOp::kAvg: return nullptr;
  }
  return nullptr;
}

}  // namespace

half_reduce::Fn reduce_function(DType dtype, ReduceOp op) {
  switch (dtype) {
    case kF32: return function_of<float>(op);
    case kF64: return function_of<double>(op);
    case kI32: return function_of<int32_t>(op);
    case kI64: return function_of<int64_t>(op);
    case kU8: return function_of<uint8_t>(op);
    case kF16: case kBF16: return half_reduce::function_for(dtype, op);
    default: return nullptr;
  }
}

}  // namespace gradflow::distributed
