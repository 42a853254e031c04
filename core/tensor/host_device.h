// GF_HOST_DEVICE marks a function that CPU kernels and CUDA kernels share, so both devices compute the
// same formula from one definition. Headers that use it must stay free of host-only code.
#pragma once

#if defined(__CUDACC__)
#define GF_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define GF_HOST_DEVICE inline
#endif
