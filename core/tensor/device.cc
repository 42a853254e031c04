#include "core/tensor/device.h"

#include <charconv>

#include "core/tensor/error.h"

#if GRADFLOW_WITH_CUDA
#include "core/tensor/cuda/cuda_device.h"
#endif

namespace gradflow {

Device Device::parse(std::string_view text) {
  if (text == "cpu") return cpu();
  if (text == "cuda" || text == "gpu") return cuda(0);
  for (std::string_view prefix : {"cuda:", "gpu:"}) {
    if (text.substr(0, prefix.size()) == prefix) {
      std::string_view digits = text.substr(prefix.size());
      int index = -1;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
      if (ec == std::errc() && end == digits.data() + digits.size() && index >= 0) return cuda(index);
    }
  }
  throw ValueError(str_cat("unknown device '", text, "' (expected cpu, cuda or cuda:N)"));
}

std::string Device::str() const { return is_cpu() ? "cpu" : str_cat("cuda:", index); }

namespace {
thread_local Device scoped_device = kCPU;
}  // namespace

DeviceScope::DeviceScope(Device device) : previous_(scoped_device) {
  if (device.is_cuda()) {
    int visible = cuda_device_count();
    if (!cuda_built()) {
      throw DeviceError(str_cat("DeviceScope: ", device.str(), " requested but gradflow was built without CUDA"));
    }
    if (device.index >= visible) {
      throw DeviceError(str_cat("DeviceScope: ", device.str(), " requested but ", visible, " CUDA device",
                                visible == 1 ? " is" : "s are", " visible"));
    }
  }
  scoped_device = device;
}

DeviceScope::~DeviceScope() { scoped_device = previous_; }

Device current_device() { return scoped_device; }

bool cuda_built() { return GRADFLOW_WITH_CUDA; }

int cuda_device_count() {
#if GRADFLOW_WITH_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

}  // namespace gradflow
