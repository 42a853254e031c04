// Device-side helpers shared by the *_kernels.cu files (here and in core/ops/cuda/): 16-bit float types
// and conversions that match the CPU's (round to nearest even, through float), libm overloads, strided
// offsets, grid sizing, and dispatch from a runtime ScalarType to a C++ type. Only nvcc includes this.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cuda/std/limits>
#include <cuda/std/type_traits>

#include "core/tensor/cuda/kernel_types.h"

namespace gradflow::cuda {

using f16 = __half;
using bf16 = __nv_bfloat16;

template <typename T>
inline constexpr bool kIsHalf = ::cuda::std::is_same_v<T, f16> || ::cuda::std::is_same_v<T, bf16>;

// The type arithmetic on T happens in: float for f16/bf16, T otherwise.
template <typename T>
using Compute = ::cuda::std::conditional_t<kIsHalf<T>, float, T>;

template <typename T>
__device__ __forceinline__ Compute<T> load(T v) {
  if constexpr (::cuda::std::is_same_v<T, f16>) {
    return __half2float(v);
  } else if constexpr (::cuda::std::is_same_v<T, bf16>) {
    return __bfloat162float(v);
  } else {
    return v;
  }
}

template <typename T>
__device__ __forceinline__ T store(Compute<T> v) {
  if constexpr (::cuda::std::is_same_v<T, f16>) {
    return __float2half_rn(v);
  } else if constexpr (::cuda::std::is_same_v<T, bf16>) {
    return __float2bfloat16_rn(v);
  } else {
    return v;
  }
}

// The same conversion as gradflow::convert on the CPU: 16-bit floats go through float, bool is v != 0.
template <typename To, typename From>
__device__ __forceinline__ To convert(From v) {
  if constexpr (::cuda::std::is_same_v<To, From>) {
    return v;
  } else if constexpr (kIsHalf<From>) {
    return convert<To>(load(v));
  } else if constexpr (kIsHalf<To>) {
    return store<To>(static_cast<float>(v));
  } else if constexpr (::cuda::std::is_same_v<To, bool>) {
    return v != From(0);
  } else {
    return static_cast<To>(v);
  }
}

template <typename T>
__device__ __forceinline__ bool is_nan(T v) {
  return v != v;
}

template <typename T>
__host__ __device__ __forceinline__ T infinity() {
  return ::cuda::std::numeric_limits<T>::infinity();
}

// float and double overloads of the libm functions kernels use (f16/bf16 compute in float).
#define GF_MATH(name, float_fn, double_fn)                               \
  __device__ __forceinline__ float name(float x) { return float_fn(x); } \
  __device__ __forceinline__ double name(double x) { return double_fn(x); }
GF_MATH(m_exp, expf, exp)
GF_MATH(m_log, logf, log)
GF_MATH(m_log1p, log1pf, log1p)
GF_MATH(m_sqrt, sqrtf, sqrt)
GF_MATH(m_tanh, tanhf, tanh)
GF_MATH(m_erf, erff, erf)
GF_MATH(m_abs, fabsf, fabs)
#undef GF_MATH

// `#pragma unroll` for the device pass only (the host compiler warns about it).
#if defined(__CUDA_ARCH__)
#define GF_UNROLL _Pragma("unroll")
#else
#define GF_UNROLL
#endif

// Element offsets of element i in each of N operands.
template <int N>
__host__ __device__ __forceinline__ void offsets(const StridedIndex<N>& ix, int64_t i, int64_t (&off)[N]) {
GF_UNROLL
  for (int k = 0; k < N; ++k) off[k] = 0;
GF_UNROLL
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d >= ix.rank) continue;
    int64_t idx = i;  // the outermost dimension takes what is left: no division
    if (d > 0) {
      idx = i % ix.sizes[d];
      i /= ix.sizes[d];
    }
GF_UNROLL
    for (int k = 0; k < N; ++k) off[k] += idx * ix.strides[k][d];
  }
}

#define GF_GRID_STRIDE_LOOP(i, n)                                                        \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

inline constexpr int kBlock = 256;

// Blocks for a grid-stride loop over n elements (n > 0).
inline unsigned grid_for(int64_t n, int block = kBlock) {
  int64_t blocks = (n + block - 1) / block;
  return static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
}

template <typename T>
struct Tag {
  using type = T;
};

// Calls f(Tag<T>{}) for the C++ type of t; cudaErrorInvalidValue for a type the family lacks.
template <typename F>
cudaError_t visit_all(ScalarType t, F&& f) {
  switch (t) {
    case ScalarType::kF32: return f(Tag<float>{});
    case ScalarType::kF64: return f(Tag<double>{});
    case ScalarType::kF16: return f(Tag<f16>{});
    case ScalarType::kBF16: return f(Tag<bf16>{});
    case ScalarType::kI32: return f(Tag<int32_t>{});
    case ScalarType::kI64: return f(Tag<int64_t>{});
    case ScalarType::kU8: return f(Tag<uint8_t>{});
    case ScalarType::kBool: return f(Tag<bool>{});
  }
  return cudaErrorInvalidValue;
}

// f32, f64, f16, bf16, i32, i64, u8 (not bool).
template <typename F>
cudaError_t visit_numeric(ScalarType t, F&& f) {
  switch (t) {
    case ScalarType::kF32: return f(Tag<float>{});
    case ScalarType::kF64: return f(Tag<double>{});
    case ScalarType::kF16: return f(Tag<f16>{});
    case ScalarType::kBF16: return f(Tag<bf16>{});
    case ScalarType::kI32: return f(Tag<int32_t>{});
    case ScalarType::kI64: return f(Tag<int64_t>{});
    case ScalarType::kU8: return f(Tag<uint8_t>{});
    default: return cudaErrorInvalidValue;
  }
}

template <typename F>
cudaError_t visit_float(ScalarType t, F&& f) {
  switch (t) {
    case ScalarType::kF32: return f(Tag<float>{});
    case ScalarType::kF64: return f(Tag<double>{});
    case ScalarType::kF16: return f(Tag<f16>{});
    case ScalarType::kBF16: return f(Tag<bf16>{});
    default: return cudaErrorInvalidValue;
  }
}

// An unsigned integer type of the given byte size, for kernels that only move elements.
template <typename F>
cudaError_t visit_size(size_t elem_size, F&& f) {
  switch (elem_size) {
    case 1: return f(Tag<uint8_t>{});
    case 2: return f(Tag<uint16_t>{});
    case 4: return f(Tag<uint32_t>{});
    case 8: return f(Tag<uint64_t>{});
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace gradflow::cuda
