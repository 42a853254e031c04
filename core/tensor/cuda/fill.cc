// Device fills: checks the tensor and launches fill_kernels.cu on the device's stream.
#include "core/tensor/cuda/fill.h"

#include "core/tensor/cuda/fill_kernels.h"
#include "core/tensor/cuda/launch.h"

namespace gradflow::cuda {
namespace {

void check_target(std::string_view op, const Tensor& out) {
  if (!out.device().is_cuda() || !out.is_contiguous()) {
    throw DeviceError(
        str_cat(op, ": expected a contiguous CUDA tensor, got ", shape_str(out.shape()), " on ", out.device().str()));
  }
}

}  // namespace

void fill(const Tensor& out, double value) {
  check_target("fill", out);
  KernelScope scope(out.device());
  check(launch_fill(scope.stream(), scalar_type(out.dtype()), out.raw_data(), out.numel(), value), "fill");
}

void fill_arange(const Tensor& out, double start, double step) {
  check_target("arange", out);
  KernelScope scope(out.device());
  check(launch_arange(scope.stream(), scalar_type(out.dtype()), out.raw_data(), out.numel(), start, step), "arange");
}

void fill_random(const Tensor& out, Distribution distribution, double a, double b, uint64_t seed, uint64_t stream) {
  check_target("random", out);
  if (!is_floating(out.dtype())) throw_unsupported_dtype("random", out.dtype());
  RandomKind kind = distribution == Distribution::kUniform  ? RandomKind::kUniform
                    : distribution == Distribution::kNormal ? RandomKind::kNormal
                                                            : RandomKind::kTruncatedNormal;
  KernelScope scope(out.device());
  check(launch_random(scope.stream(), scalar_type(out.dtype()), out.raw_data(), out.numel(), kind, a, b, seed, stream),
        "random");
}

}  // namespace gradflow::cuda
