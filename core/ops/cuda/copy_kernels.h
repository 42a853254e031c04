// Launchers of copy_kernels.cu: kernels that move or convert elements (cast and strided copies, where,
// gather, scatter_add). Each takes the device's stream, queues its work and returns the launch status;
// n == 0 launches nothing. Pointers are device pointers to the first element.
#pragma once

#include "core/tensor/cuda/kernel_types.h"

namespace gradflow::cuda {

// out[i] = convert(in[i]) for the n elements of the index space; ix holds (out, in) strides.
cudaError_t launch_convert(cudaStream_t stream, ScalarType out_type, void* out, ScalarType in_type, const void* in,
                           const StridedIndex<2>& ix, int64_t n);

// out[i] = cond[i] ? a[i] : b[i] for elements of elem_size bytes; ix holds (out, cond, a, b) strides.
cudaError_t launch_where(cudaStream_t stream, size_t elem_size, void* out, const bool* cond, const void* a,
                         const void* b, const StridedIndex<4>& ix, int64_t n);

// out is [outer, k, inner], params [outer, n, inner], both contiguous: out[o, j, :] = params[o, ids[j], :].
// The k ids must lie in [0, n) (the caller validates them).
cudaError_t launch_gather(cudaStream_t stream, size_t elem_size, void* out, const void* params, const int64_t* ids,
                          int64_t outer, int64_t n, int64_t k, int64_t inner);

// out is [outer, n, inner] (already zeroed), updates [outer, k, inner], both contiguous:
// out[o, ids[j], :] += updates[o, j, :] with atomic adds (repeated ids accumulate). Types: f32, f64, i32,
// i64, u8.
cudaError_t launch_scatter_add(cudaStream_t stream, ScalarType type, void* out, const void* updates, const int64_t* ids,
                               int64_t outer, int64_t n, int64_t k, int64_t inner);

}  // namespace gradflow::cuda
