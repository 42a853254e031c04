// Turning CUDA, cuBLAS and cuDNN status codes into gradflow::DeviceError. Internal to the CUDA build:
// it includes cuda_runtime_api.h, so only sources compiled with the CUDA include paths may include it.
#pragma once

#include <cuda_runtime_api.h>

#include <string_view>

#include "core/tensor/error.h"

namespace gradflow::cuda {

// Throws DeviceError "<what>: <CUDA error name>: <CUDA error string>" and clears the thread's last error.
[[noreturn]] void throw_cuda_error(cudaError_t error, std::string_view what);

inline void check(cudaError_t error, std::string_view what) {
  if (error != cudaSuccess) throw_cuda_error(error, what);
}

}  // namespace gradflow::cuda
