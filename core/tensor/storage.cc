#include "core/tensor/storage.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <map>
#include <mutex>
#include <cstring>
#include <new>

#include "core/tensor/error.h"

#if GRADFLOW_WITH_CUDA
#include "core/tensor/cuda/cuda_device.h"
#endif

namespace gradflow {
namespace {

// Blocks up to 32 KiB are rounded up to a power of two (64 B at least) and kept after free in a small
// cache of the freeing thread, per size, as glibc's tcache does for malloc: aligned_alloc bypasses tcache,
// and a 4-byte tensor's allocation cost more than a 4-byte MPI all-reduce here. Each thread keeps at most
// kSmallBlocksPerSize blocks of each size (under 2 MiB in all); a block freed by a thread whose cache is full
// or gone (at exit) goes back to the C allocator.
class SmallBlockCache {
 public:
  static constexpr int kMinShift = 6;  // 64 B: kCpuAlignment
  static constexpr int kSizes = 10;    // 64 B ... 32 KiB
  static constexpr size_t kLargest = size_t{1} << (kMinShift + kSizes - 1);  // 32 KiB
  static constexpr int kSmallBlocksPerSize = 32;

  static size_t round(size_t nbytes) { return std::max(std::bit_ceil(nbytes), size_t{1} << kMinShift); }
  static int size_index(size_t rounded) { return std::countr_zero(rounded) - kMinShift; }

  ~SmallBlockCache() {
    gone = true;
    for (int i = 0; i < kSizes; ++i) {
      for (int k = 0; k < count_[i]; ++k) std::free(blocks_[i][k]);
    }
  }
  // The calling thread's cache; null once it has been destroyed (blocks freed during thread exit).
  static SmallBlockCache* mine() {
    thread_local SmallBlockCache cache;
    return gone ? nullptr : &cache;
  }

  void* take(int index) { return count_[index] == 0 ? nullptr : blocks_[index][--count_[index]]; }
  bool keep(int index, void* block) {
    if (count_[index] == kSmallBlocksPerSize) return false;
    blocks_[index][count_[index]++] = block;
    return true;
  }

 private:
  static thread_local bool gone;  // trivially destructible: still readable while the cache is destroyed
  void* blocks_[kSizes][kSmallBlocksPerSize];
  int count_[kSizes] = {};
};
thread_local bool SmallBlockCache::gone = false;

// Blocks of 64 KiB and more are cached after free, keyed by their rounded size: an op that allocates a
// fresh 64 MiB output each step otherwise pays for mmap, page faults and zeroing every time, which halves
// the bandwidth of memory-bound ops. (glibc serves blocks from 128 KiB with mmap: a 512 KiB all-reduce
// output cost 0.46 ms of page faults per op on this VM before the cache reached down to 64 KiB.) The cache
// holds at most kMaxCachedBytes; beyond that, freed blocks go back to the system.
class CpuAllocator final : public Allocator {
 public:
  static constexpr size_t kLargeBlock = size_t{1} << 16;  // cached from here
  static constexpr int kClassesPerDoubling = 8;            // cached sizes: at most 12.5% above the request
  static constexpr size_t kMaxCachedBytes = size_t{1} << 30;
  static constexpr size_t kHugePage = size_t{2} << 20;
  static constexpr size_t kHugeFrom = size_t{8} << 20;  // blocks from here are whole huge pages

  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    size_t rounded = round(nbytes);
    if (nbytes <= SmallBlockCache::kLargest) {
      if (SmallBlockCache* cache = SmallBlockCache::mine()) {
        if (void* p = cache->take(SmallBlockCache::size_index(rounded))) return p;
      }
    } else if (rounded >= kLargeBlock) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = cache_.find(rounded);
      if (it != cache_.end()) {
        void* p = it->second;
        cache_.erase(it);
        cached_bytes_ -= rounded;
        return p;
      }
    }
    const size_t alignment = rounded >= kHugeFrom ? kHugePage : kCpuAlignment;
    void* p = std::aligned_alloc(alignment, rounded);
    if (p == nullptr) {
      release_cache();
      p = std::aligned_alloc(alignment, rounded);
      if (p == nullptr) throw std::bad_alloc();
    }
    // Large tensors (a dataset in memory, whose batches gather random rows) on transparent huge pages:
    // one TLB entry per 2 MiB instead of per 4 KiB. Where the kernel's THP mode is "madvise" (as here),
    // nothing uses them unless asked; where it is "never", this does nothing.
    if (alignment == kHugePage) (void)madvise(p, rounded, MADV_HUGEPAGE);
    return p;
  }

  void deallocate(void* ptr, size_t nbytes) override {
    if (ptr == nullptr) return;
    size_t rounded = round(nbytes);
    if (nbytes <= SmallBlockCache::kLargest) {
      SmallBlockCache* cache = SmallBlockCache::mine();
      if (cache != nullptr && cache->keep(SmallBlockCache::size_index(rounded), ptr)) return;
    } else if (rounded >= kLargeBlock) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_bytes_ + rounded <= kMaxCachedBytes) {
        cache_.emplace(rounded, ptr);
        cached_bytes_ += rounded;
        return;
      }
    }
    std::free(ptr);
  }

 private:
  // Small blocks: to their power of two; up to 64 KiB (not cached): to 64 B; cached ones to one of 8 sizes
  // per doubling (as PyTorch's caching allocator rounds), so that tensors whose rows change from step to
  // step (batches split by speed, short last batches) reuse a few blocks instead of each needing fresh,
  // page-faulting memory.
  static size_t round(size_t nbytes) {
    if (nbytes <= SmallBlockCache::kLargest) return SmallBlockCache::round(nbytes);
    if (nbytes < kLargeBlock) return (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    size_t unit = std::bit_floor(nbytes) / kClassesPerDoubling;
    if (nbytes >= kHugeFrom) unit = std::max(unit, kHugePage);
    return (nbytes + unit - 1) / unit * unit;
  }
  void release_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, p] : cache_) std::free(p);
    cache_.clear();
    cached_bytes_ = 0;
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> cache_;
  size_t cached_bytes_ = 0;
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
