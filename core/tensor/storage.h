// Reference-counted device memory behind tensors, and the allocators that provide it.
//
// Tensors share a Storage through std::shared_ptr, so views (reshape, transpose, slice) never copy.
// CPU memory is 64-byte aligned; CUDA memory comes from a caching allocator (core/tensor/cuda/), so ops do
// not call cudaMalloc each time.
#pragma once

#include <cstddef>
#include <memory>

#include "core/tensor/device.h"

namespace gradflow {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
};

inline constexpr size_t kCpuAlignment = 64;
Allocator& cpu_allocator();
// The allocator for a device; DeviceError when the build or the machine has no such device.
Allocator& allocator_for(Device device);

class Storage {
 public:
  // Allocates nbytes on device (uninitialised).
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device);
  Storage(void* data, size_t nbytes, Device device, Allocator* allocator)
      : data_(data), nbytes_(nbytes), device_(device), allocator_(allocator) {}
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  Allocator* allocator_;  // null: memory not owned
};

// Copies bytes between any two devices; returns once dst can be read on the host (for a CPU dst).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

}  // namespace gradflow
