#include "core/tensor/storage.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/tensor/error.h"

#if GRADFLOW_WITH_CUDA
#include "core/tensor/cuda/cuda_device.h"
#endif

namespace gradflow {
namespace {

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    size_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    void* p = std::aligned_alloc(kCpuAlignment, rounded);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void deallocate(void* ptr, size_t) override { std::free(ptr); }
};

}  // namespace

Allocator& cpu_allocator() {
  static CpuAllocator* allocator = new CpuAllocator();  // never destroyed: tensors may outlive statics
  return *allocator;
}

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
#if GRADFLOW_WITH_CUDA
  return cuda::caching_allocator(device.index);
#else
  throw DeviceError(str_cat("device ", device.str(), " requested but gradflow was built without CUDA"));
#endif
}

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  Allocator& allocator = allocator_for(device);
  return std::make_shared<Storage>(allocator.allocate(nbytes), nbytes, device, &allocator);
}

Storage::~Storage() {
  if (allocator_ != nullptr && data_ != nullptr) allocator_->deallocate(data_, nbytes_);
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
#if GRADFLOW_WITH_CUDA
  cuda::copy(dst, dst_device, src, src_device, nbytes);
#else
  throw DeviceError("copy between " + src_device.str() + " and " + dst_device.str() +
                    " needs CUDA, and gradflow was built without it");
#endif
}

}  // namespace gradflow
