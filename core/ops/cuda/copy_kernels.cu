// Kernels that move or convert elements: strided dtype conversion (cast_copy, contiguous_copy,
// copy_into), where, gather and scatter_add. Kernels first, then one launcher per kernel.
#include "core/ops/cuda/copy_kernels.h"
#include "core/tensor/cuda/kernel_common.cuh"

namespace gradflow::cuda {
namespace {

// out and in share the index space of ix; any strides, including 0 (broadcast) in `in`.
template <typename To, typename From>
__global__ void convert_kernel(To* out, const From* in, StridedIndex<2> ix, int64_t n) {
  GF_GRID_STRIDE_LOOP(i, n) {
    int64_t off[2];
    offsets(ix, i, off);
    out[off[0]] = convert<To>(in[off[1]]);
  }
}

template <typename T>
__global__ void where_kernel(T* out, const bool* cond, const T* a, const T* b, StridedIndex<4> ix, int64_t n) {
  GF_GRID_STRIDE_LOOP(i, n) {
    int64_t off[4];
    offsets(ix, i, off);
    out[off[0]] = cond[off[1]] ? a[off[2]] : b[off[3]];
  }
}

// out [outer, k, inner] <- params [outer, n, inner]; one thread per output element.
template <typename T>
__global__ void gather_kernel(T* out, const T* params, const int64_t* ids, int64_t n, int64_t k, int64_t inner,
                              int64_t total) {
  GF_GRID_STRIDE_LOOP(t, total) {
    int64_t i = t % inner;
    int64_t row = t / inner;
    int64_t j = row % k;
    int64_t o = row / k;
    out[t] = params[(o * n + ids[j]) * inner + i];
  }
}

__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(int32_t* p, int32_t v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(int64_t* p, int64_t v) {
  // Two's complement: adding the unsigned bit pattern is the signed add (wrapping).
  atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
}
// A byte add through a compare-and-swap loop on the aligned 32-bit word that holds the byte.
__device__ __forceinline__ void atomic_add(uint8_t* p, uint8_t v) {
  uintptr_t address = reinterpret_cast<uintptr_t>(p);
  unsigned int* word = reinterpret_cast<unsigned int*>(address & ~uintptr_t{3});
  unsigned int shift = static_cast<unsigned int>(address & 3) * 8;
  unsigned int old = *word, assumed;
  do {
    assumed = old;
    unsigned int byte = ((assumed >> shift) + v) & 0xffu;
    old = atomicCAS(word, assumed, (assumed & ~(0xffu << shift)) | (byte << shift));
  } while (old != assumed);
}

// One thread per update element: out[o, ids[j], i] += updates[o, j, i].
template <typename T>
__global__ void scatter_add_kernel(T* out, const T* updates, const int64_t* ids, int64_t n, int64_t k, int64_t inner,
                                   int64_t total) {
  GF_GRID_STRIDE_LOOP(t, total) {
    int64_t i = t % inner;
    int64_t row = t / inner;
    int64_t j = row % k;
    int64_t o = row / k;
    atomic_add(out + (o * n + ids[j]) * inner + i, updates[t]);
  }
}

bool plain_contiguous(const StridedIndex<2>& ix) {
  return ix.rank == 0 || (ix.rank == 1 && ix.strides[0][0] == 1 && ix.strides[1][0] == 1);
}

}  // namespace

cudaError_t launch_convert(cudaStream_t stream, ScalarType out_type, void* out, ScalarType in_type, const void* in,
                           const StridedIndex<2>& ix, int64_t n) {
  if (n == 0) return cudaSuccess;
  if (out_type == in_type) {
    size_t elem_size = out_type == ScalarType::kF64 || out_type == ScalarType::kI64    ? 8
                       : out_type == ScalarType::kF32 || out_type == ScalarType::kI32  ? 4
                       : out_type == ScalarType::kF16 || out_type == ScalarType::kBF16 ? 2
                                                                                       : 1;
    if (plain_contiguous(ix)) return cudaMemcpyAsync(out, in, n * elem_size, cudaMemcpyDeviceToDevice, stream);
    return visit_size(elem_size, [&](auto tag) {
      using T = typename decltype(tag)::type;
      convert_kernel<T, T><<<grid_for(n), kBlock, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(in), ix, n);
      return cudaGetLastError();
    });
  }
  return visit_all(out_type, [&](auto out_tag) {
    using To = typename decltype(out_tag)::type;
    return visit_all(in_type, [&](auto in_tag) {
      using From = typename decltype(in_tag)::type;
      convert_kernel<To, From>
          <<<grid_for(n), kBlock, 0, stream>>>(static_cast<To*>(out), static_cast<const From*>(in), ix, n);
      return cudaGetLastError();
    });
  });
}

cudaError_t launch_where(cudaStream_t stream, size_t elem_size, void* out, const bool* cond, const void* a,
                         const void* b, const StridedIndex<4>& ix, int64_t n) {
  if (n == 0) return cudaSuccess;
  return visit_size(elem_size, [&](auto tag) {
    using T = typename decltype(tag)::type;
    where_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(static_cast<T*>(out), cond, static_cast<const T*>(a),
                                                        static_cast<const T*>(b), ix, n);
    return cudaGetLastError();
  });
}

cudaError_t launch_gather(cudaStream_t stream, size_t elem_size, void* out, const void* params, const int64_t* ids,
                          int64_t outer, int64_t n, int64_t k, int64_t inner) {
  int64_t total = outer * k * inner;
  if (total == 0) return cudaSuccess;
  return visit_size(elem_size, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gather_kernel<T><<<grid_for(total), kBlock, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(params), ids,
                                                             n, k, inner, total);
    return cudaGetLastError();
  });
}

cudaError_t launch_scatter_add(cudaStream_t stream, ScalarType type, void* out, const void* updates, const int64_t* ids,
                               int64_t outer, int64_t n, int64_t k, int64_t inner) {
  int64_t total = outer * k * inner;
  if (total == 0) return cudaSuccess;
  auto launch = [&](auto tag) {
    using T = typename decltype(tag)::type;
    scatter_add_kernel<T><<<grid_for(total), kBlock, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(updates),
                                                                  ids, n, k, inner, total);
    return cudaGetLastError();
  };
  switch (type) {
    case ScalarType::kF32: return launch(Tag<float>{});
    case ScalarType::kF64: return launch(Tag<double>{});
    case ScalarType::kI32: return launch(Tag<int32_t>{});
    case ScalarType::kI64: return launch(Tag<int64_t>{});
    case ScalarType::kU8: return launch(Tag<uint8_t>{});
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace gradflow::cuda
