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

// The device that layers put their weights on and models run on, per thread: tf.device() for models.
//   DeviceScope gpu(Device::cuda(0));
//   Model model = Sequential({...});   // weights on cuda:0, also those built later by fit()
//   model.fit(x, y);                   // host batches are copied to cuda:0 step by step
// Scopes nest; each restores the previous device when it ends. Outside any scope it is the CPU. Only
// weight creation and model inputs follow it: zeros(), random_normal() etc. keep their explicit device
// argument (kCPU by default). A CUDA device that this process cannot use is a DeviceError at once.
class DeviceScope {
 public:
  explicit DeviceScope(Device device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  Device previous_;
};
Device current_device();

// Whether this build has the CUDA kernels, and how many CUDA devices this process can use (0 without a
// GPU, a driver or a CUDA build).
bool cuda_built();
int cuda_device_count();

}  // namespace gradflow
