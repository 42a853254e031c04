// Fill kernels for creation.cc and random.cc: constants, arange and Philox random numbers computed on the
// device by the same host/device code (random_math.h) the CPU loop uses.
#include "core/tensor/cuda/fill_kernels.h"

#include <cstring>

#include "core/tensor/cuda/kernel_common.cuh"
#include "core/tensor/random_math.h"

namespace gradflow::cuda {
namespace {

template <typename T>
__global__ void fill_kernel(T* out, int64_t n, T value) {
  GF_GRID_STRIDE_LOOP(i, n) out[i] = value;
}

template <typename T>
__global__ void arange_kernel(T* out, int64_t n, double start, double step) {
  GF_GRID_STRIDE_LOOP(i, n) out[i] = convert<T>(start + static_cast<double>(i) * step);
}

template <typename T>
__global__ void random_kernel(T* out, int64_t n, RandomKind kind, double a, double b, uint64_t seed,
                              uint64_t stream_id) {
  GF_GRID_STRIDE_LOOP(i, n) {
    double v;
    switch (kind) {
      case RandomKind::kUniform:
        if constexpr (::cuda::std::is_same_v<T, double>) {
          v = a + (b - a) * philox::uniform_at(seed, stream_id, i);
        } else {  // f32, f16, bf16 (and the integer types, which random.cc refuses): 24 bits, as on the CPU
          v = a + (b - a) * static_cast<double>(philox::uniform_float_at(seed, stream_id, i));
        }
        break;
      case RandomKind::kNormal: v = a + b * philox::normal_at(seed, stream_id, i); break;
      default: v = a + b * philox::truncated_normal_at(seed, stream_id, i); break;
    }
    out[i] = convert<T>(v);
  }
}

// The host-side value of `value` as a T, for the fill kernel's argument.
template <typename T>
T host_convert(double value) {
  if constexpr (::cuda::std::is_same_v<T, f16>) {
    return __float2half_rn(static_cast<float>(value));
  } else if constexpr (::cuda::std::is_same_v<T, bf16>) {
    return __float2bfloat16_rn(static_cast<float>(value));
  } else if constexpr (::cuda::std::is_same_v<T, bool>) {
    return value != 0;
  } else {
    return static_cast<T>(value);
  }
}

}  // namespace

cudaError_t launch_fill(cudaStream_t stream, ScalarType type, void* out, int64_t n, double value) {
  if (n == 0) return cudaSuccess;
  return visit_all(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T v = host_convert<T>(value);
    unsigned char bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    bool all_zero = true;
    for (unsigned char c : bytes) all_zero &= c == 0;
    if (all_zero) return cudaMemsetAsync(out, 0, n * sizeof(T), stream);
    fill_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(static_cast<T*>(out), n, v);
    return cudaGetLastError();
  });
}

cudaError_t launch_arange(cudaStream_t stream, ScalarType type, void* out, int64_t n, double start, double step) {
  if (n == 0) return cudaSuccess;
  return visit_all(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    arange_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(static_cast<T*>(out), n, start, step);
    return cudaGetLastError();
  });
}

cudaError_t launch_random(cudaStream_t stream, ScalarType type, void* out, int64_t n, RandomKind kind, double a,
                          double b, uint64_t seed, uint64_t stream_id) {
  if (n == 0) return cudaSuccess;
  return visit_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    random_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(static_cast<T*>(out), n, kind, a, b, seed, stream_id);
    return cudaGetLastError();
  });
}

}  // namespace gradflow::cuda
