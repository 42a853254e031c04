#include "distributed/comm/half_reduce.h"

#include <algorithm>
#include <cstdint>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "core/tensor/half_convert.h"

namespace gradflow::distributed::half_reduce {
namespace {

template <ReduceOp kOp>
inline float combine(float a, float b) {
  if constexpr (kOp == ReduceOp::kSum) return a + b;
  if constexpr (kOp == ReduceOp::kProd) return a * b;
  if constexpr (kOp == ReduceOp::kMin) return std::min(a, b);
  if constexpr (kOp == ReduceOp::kMax) return std::max(a, b);
  return a;
}

using half_convert::bf16_to_float;
using half_convert::float_to_bf16;

template <ReduceOp kOp>
void bf16_apply(void* out, const void* a, const void* b, size_t n) {
  const uint16_t* x = static_cast<const uint16_t*>(a);
  const uint16_t* y = static_cast<const uint16_t*>(b);
  uint16_t* z = static_cast<uint16_t*>(out);
  for (size_t i = 0; i < n; ++i) z[i] = float_to_bf16(combine<kOp>(bf16_to_float(x[i]), bf16_to_float(y[i])));
}

template <ReduceOp kOp>
void f16_apply(void* out, const void* a, const void* b, size_t n) {
  const uint16_t* x = static_cast<const uint16_t*>(a);
  const uint16_t* y = static_cast<const uint16_t*>(b);
  uint16_t* z = static_cast<uint16_t*>(out);
  size_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    __m256 u = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(y + i)));
    __m256 r;
    if constexpr (kOp == ReduceOp::kSum) r = _mm256_add_ps(u, v);
    else if constexpr (kOp == ReduceOp::kProd) r = _mm256_mul_ps(u, v);
    else if constexpr (kOp == ReduceOp::kMin) r = _mm256_min_ps(u, v);
    else r = _mm256_max_ps(u, v);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(z + i), _mm256_cvtps_ph(r, _MM_FROUND_TO_NEAREST_INT));
  }
#endif
  for (; i < n; ++i) {
    Half h, u, v;
    u.bits = x[i];
    v.bits = y[i];
    h = Half(combine<kOp>(static_cast<float>(u), static_cast<float>(v)));
    z[i] = h.bits;
  }
}


}  // namespace

Fn function_for(DType dtype, ReduceOp op) {
  if (dtype == kF16) {
    switch (op) {
      case ReduceOp::kSum: return &f16_apply<ReduceOp::kSum>;
      case ReduceOp::kProd: return &f16_apply<ReduceOp::kProd>;
      case ReduceOp::kMin: return &f16_apply<ReduceOp::kMin>;
      case ReduceOp::kMax: return &f16_apply<ReduceOp::kMax>;
      case ReduceOp::kAvg: return nullptr;
    }
  }
  if (dtype == kBF16) {
    switch (op) {
      case ReduceOp::kSum: return &bf16_apply<ReduceOp::kSum>;
      case ReduceOp::kProd: return &bf16_apply<ReduceOp::kProd>;
      case ReduceOp::kMin: return &bf16_apply<ReduceOp::kMin>;
      case ReduceOp::kMax: return &bf16_apply<ReduceOp::kMax>;
      case ReduceOp::kAvg: return nullptr;
    }
  }
  return nullptr;
}

}  // namespace gradflow::distributed::half_reduce
