// Per-thread library handles (cuBLAS, cuDNN) drawn from a per-device pool. A handle must not be used by
// two threads at once, so each thread borrows its own on first use and gives it back to the pool when
// the thread ends: short-lived threads reuse handles instead of creating (and leaking) new ones.
//
//   cublasHandle_t h = pooled_handle<cublasHandle_t, create_cublas>(device);
#pragma once

#include <mutex>
#include <vector>

namespace gradflow::cuda {

// kCreate(device) makes a new handle bound to the device's stream. Handles are never destroyed: the
// CUDA runtime may already be gone when the process's last thread ends.
template <typename Handle, Handle (*kCreate)(int device)>
Handle pooled_handle(int device) {
  static std::mutex* mu = new std::mutex();
  static auto* free_handles = new std::vector<std::vector<Handle>>();
  struct Borrowed {
    std::vector<Handle> by_device;
    ~Borrowed() {
      std::lock_guard<std::mutex> lock(*mu);
      for (size_t d = 0; d < by_device.size(); ++d) {
        if (by_device[d] != nullptr) (*free_handles)[d].push_back(by_device[d]);
      }
    }
  };
  thread_local Borrowed borrowed;
  if (static_cast<int>(borrowed.by_device.size()) <= device) borrowed.by_device.resize(device + 1, nullptr);
  Handle& h = borrowed.by_device[device];
  if (h == nullptr) {
    {
      std::lock_guard<std::mutex> lock(*mu);
      if (static_cast<int>(free_handles->size()) <= device) free_handles->resize(device + 1);
      std::vector<Handle>& pool = (*free_handles)[device];
      if (!pool.empty()) {
        h = pool.back();
        pool.pop_back();
      }
    }
    if (h == nullptr) h = kCreate(device);
  }
  return h;
}

}  // namespace gradflow::cuda
