// Device discovery, per-device streams, the caching allocator and copies (see cuda_device.h).
#include "core/tensor/cuda/cuda_device.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/tensor/cuda/cuda_check.h"

namespace gradflow::cuda {

void throw_cuda_error(cudaError_t error, std::string_view what) {
  cudaGetLastError();  // clear a non-sticky error so the next call does not report it again
  throw DeviceError(str_cat(what, ": ", cudaGetErrorName(error), ": ", cudaGetErrorString(error)));
}

namespace {

constexpr size_t kSmallGranule = 512;
constexpr size_t kSmallLimit = size_t{1} << 20;  // up to 1 MiB: 512-byte granules
constexpr size_t kLargeGranule = size_t{2} << 20;

size_t round_size(size_t nbytes) {
  size_t granule = nbytes <= kSmallLimit ? kSmallGranule : kLargeGranule;
  return (nbytes + granule - 1) / granule * granule;
}

class CachingAllocator final : public Allocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {}

  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    size_t rounded = round_size(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    auto bin = free_.find(rounded);
    if (bin != free_.end() && !bin->second.empty()) {
      void* p = bin->second.back();
      bin->second.pop_back();
      stats_.cached_bytes -= rounded;
      return hand_out(p, rounded);
    }
    DeviceGuard guard(device_);
    void* p = nullptr;
    cudaError_t error = cudaMalloc(&p, rounded);
    if (error == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_cached_locked();
      error = cudaMalloc(&p, rounded);
      if (error == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        throw DeviceError(str_cat("cuda:", device_, ": out of memory allocating ", nbytes, " bytes (", rounded,
                                  " rounded) with ", stats_.allocated_bytes, " bytes in use by tensors"));
      }
    }
    check(error, str_cat("cudaMalloc of ", rounded, " bytes on cuda:", device_));
    ++stats_.device_allocations;
    return hand_out(p, rounded);
  }

  void deallocate(void* ptr, size_t nbytes) override {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    size_t rounded = round_size(nbytes);
    auto live = live_.find(ptr);
    if (live != live_.end()) {
      rounded = live->second;
      live_.erase(live);
    }
    stats_.allocated_bytes -= rounded;
    stats_.cached_bytes += rounded;
    free_[rounded].push_back(ptr);
  }

  CacheStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_cached_locked();
  }

 private:
  void* hand_out(void* p, size_t rounded) {
    live_[p] = rounded;
    stats_.allocated_bytes += rounded;
    return p;
  }

  // Frees every cached block. cudaFree waits for the device, so kernels still reading a block that was
  // returned to the cache in stream order finish first.
  void release_cached_locked() {
    DeviceGuard guard(device_);
    for (auto& [size, blocks] : free_) {
      for (void* p : blocks) cudaFree(p);
      stats_.cached_bytes -= size * blocks.size();
      blocks.clear();
    }
    free_.clear();
    cudaGetLastError();
  }

  const int device_;
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // rounded size -> free blocks of that size
  std::unordered_map<void*, size_t> live_;               // handed-out block -> rounded size
  CacheStats stats_;
};

struct DeviceState {
  explicit DeviceState(int device) : allocator(device) {}
  CachingAllocator allocator;
  std::once_flag stream_once;
  cudaStream_t stream = nullptr;
};

// One state per visible device, created on first use and never destroyed: tensors held by statics may
// be freed after main returns.
DeviceState& state(int device) {
  static std::vector<DeviceState*>* states = [] {
    auto* v = new std::vector<DeviceState*>();
    for (int d = 0; d < device_count(); ++d) v->push_back(new DeviceState(d));
    return v;
  }();
  if (device < 0 || device >= static_cast<int>(states->size())) {
    if (states->empty()) {
      throw DeviceError(str_cat("cuda:", device, " requested but no CUDA device is visible (no GPU or driver)"));
    }
    throw DeviceError(str_cat("cuda:", device, " requested but only ", states->size(), " CUDA device",
                              states->size() == 1 ? " is" : "s are", " visible"));
  }
  return *(*states)[device];
}

}  // namespace

int device_count() {
  static const int count = [] {
    int n = 0;  // cudaGetDeviceCount leaves it untouched when there is no driver
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

Allocator& caching_allocator(int device) { return state(device).allocator; }

CacheStats cache_stats(int device) { return state(device).allocator.stats(); }

void empty_cache(int device) {
  synchronize(device);
  state(device).allocator.empty_cache();
}

cudaStream_t stream(int device) {
  DeviceState& s = state(device);
  std::call_once(s.stream_once, [&] {
    DeviceGuard guard(device);
    check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), str_cat("creating a stream on cuda:", device));
  });
  return s.stream;
}

void synchronize(int device) {
  cudaStream_t s = stream(device);
  DeviceGuard guard(device);
  check(cudaStreamSynchronize(s), str_cat("synchronizing cuda:", device));
}

void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
    return;
  }
  auto what = [&] { return str_cat("copying ", nbytes, " bytes from ", src_device.str(), " to ", dst_device.str()); };
  if (dst_device.is_cuda() && src_device.is_cuda() && dst_device.index == src_device.index) {
    cudaStream_t s = stream(dst_device.index);
    DeviceGuard guard(dst_device.index);
    check(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, s), what());
    return;
  }
  if (dst_device.is_cuda() && src_device.is_cuda()) {
    synchronize(dst_device.index);  // earlier work on dst's stream may still use the destination block
    cudaStream_t s = stream(src_device.index);
    DeviceGuard guard(src_device.index);
    check(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index, nbytes, s), what());
    check(cudaStreamSynchronize(s), what());
    return;
  }
  // Host <-> device. Synchronizing after a host-to-device copy too lets the caller free or reuse the host
  // buffer at once, whether or not it is pinned.
  int device = dst_device.is_cuda() ? dst_device.index : src_device.index;
  cudaStream_t s = stream(device);
  DeviceGuard guard(device);
  cudaMemcpyKind kind = dst_device.is_cuda() ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
  check(cudaMemcpyAsync(dst, src, nbytes, kind, s), what());
  check(cudaStreamSynchronize(s), what());
}

DeviceGuard::DeviceGuard(int device) : previous_(device) {
  check(cudaGetDevice(&previous_), "cudaGetDevice");
  if (previous_ != device) check(cudaSetDevice(device), str_cat("cudaSetDevice(", device, ")"));
}

DeviceGuard::~DeviceGuard() {
  int current = previous_;
  if (cudaGetDevice(&current) == cudaSuccess && current != previous_) cudaSetDevice(previous_);
}

}  // namespace gradflow::cuda
