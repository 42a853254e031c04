// Where a tensor's storage lives: the CPU or a CUDA device by index ("cpu", "cuda:0").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace gradflow {

enum class DeviceType : uint8_t { kCPU = 0, kCUDA = 1 };
inline constexpr int kNumDeviceTypes = 2;

struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;

  static Device cpu() { return {DeviceType::kCPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::kCUDA, index}; }
  // Parses "cpu", "cuda" (= cuda:0) or "cuda:N"; throws ValueError otherwise.
  static Device parse(std::string_view text);

  bool is_cpu() const { return type == DeviceType::kCPU; }
  bool is_cuda() const { return type == DeviceType::kCUDA; }
  std::string str() const;
  bool operator==(const Device&) const = default;
};

inline const Device kCPU = Device::cpu();

// Whether this build has the CUDA kernels, and how many CUDA devices this process can use (0 without a
// GPU, a driver or a CUDA build).
bool cuda_built();
int cuda_device_count();

}  // namespace gradflow
