// CUDA devices for the tensor layer: how many there are, one stream per device, a caching allocator per
// device, and byte copies between the host and devices. storage.cc and device.cc call these when gradflow
// is built with CUDA; kernels launch on stream(device) so work on one device runs in order.
//
//   Allocator& a = cuda::caching_allocator(0);
//   void* p = a.allocate(1 << 20);   // cudaMalloc only when no cached block of this size is free
//   a.deallocate(p, 1 << 20);        // back to the cache, not to the driver
//   cuda::copy(host, kCPU, p, Device::cuda(0), 1 << 20);  // host is readable on return
//
// The header needs no CUDA headers (cudaStream_t is declared here the way cuda_runtime_api.h declares
// it), so code outside the CUDA build flags, tests included, may include it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tensor/device.h"
#include "core/tensor/storage.h"

typedef struct CUstream_st* cudaStream_t;  // NOLINT: the same declaration as cuda_runtime_api.h

namespace gradflow::cuda {

// Visible CUDA devices; 0 when there is no driver or GPU (never throws).
int device_count();

// The caching allocator of a device: freed blocks are kept in size bins and handed out again, so
// cudaMalloc runs only on a cache miss. Sizes are rounded up to 512 bytes (up to 1 MiB) or to 2 MiB
// (larger). On out-of-memory the cache is released and the allocation retried once; a second failure
// throws DeviceError naming the device and the size. DeviceError when `device` is not a visible device.
// Blocks are reused in stream order: all work on a device runs on stream(device).
Allocator& caching_allocator(int device);

struct CacheStats {
  size_t allocated_bytes = 0;      // rounded sizes of the blocks handed out and not yet returned
  size_t cached_bytes = 0;         // rounded sizes of the free blocks kept for reuse
  int64_t device_allocations = 0;  // cudaMalloc calls that succeeded so far
};
CacheStats cache_stats(int device);
// Returns every cached free block of the device to the driver (after synchronizing the device).
void empty_cache(int device);

// Copies nbytes between the host and a device or between two devices, in order with the work already
// queued on the devices' streams. Returns once a host destination can be read (and once a host source
// may be reused). DeviceError with the CUDA error string on failure.
void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

// The device's stream (non-blocking, created on first use); every gradflow kernel on the device runs on it.
cudaStream_t stream(int device);

// Waits until the work queued on the device's stream has finished.
void synchronize(int device);

// Makes `device` current on this thread while it lives (kernels, cuBLAS and cudaMalloc act on the
// current device) and restores the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
};

}  // namespace gradflow::cuda
