#include "core/ops/op.h"

#include "core/autodiff/tape.h"
#include "core/ops/internal.h"
#include "core/tensor/denormals.h"

namespace gradflow {

void Attrs::set(std::string_view key, AttrValue value) {
  for (auto& [k, v] : entries_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries_.emplace_back(key, std::move(value));
}

OpRegistry& OpRegistry::global() {
  static OpRegistry* registry = [] {
    auto* r = new OpRegistry();
    register_all_ops(*r);
    return r;
  }();
  return *registry;
}

OpDef& OpRegistry::define(OpDef def) {
  for (const auto& op : ops_) {
    if (op->name == def.name) throw ValueError(str_cat("op '", def.name, "' is defined twice"));
  }
  ops_.push_back(std::make_unique<OpDef>(std::move(def)));
  return *ops_.back();
}

const OpDef& OpRegistry::get(std::string_view name) const {
  for (const auto& op : ops_) {
    if (op->name == name) return *op;
  }
  throw ValueError(str_cat("no op named '", name, "' is registered"));
}

OpDef& OpRegistry::get_mutable(std::string_view name) { return const_cast<OpDef&>(get(name)); }

void OpRegistry::set_kernel(std::string_view name, DeviceType device, KernelFn kernel) {
  get_mutable(name).kernels[static_cast<int>(device)] = kernel;
}

std::vector<std::string> OpRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& op : ops_) out.push_back(op->name);
  return out;
}

namespace {

Device common_device(const OpDef& op, const TensorList& inputs) {
  Device device = kCPU;
  bool seen = false;
  for (const Tensor& t : inputs) {
    if (!t.defined()) throw StateError(str_cat(op.name, ": an input tensor is undefined"));
    if (!seen) {
      device = t.device();
      seen = true;
    } else if (t.device() != device) {
      throw DeviceError(str_cat(op.name, ": inputs are on different devices (", device.str(), " and ",
                                     t.device().str(), ")"));
    }
  }
  return device;
}

// f16/bf16 on the CPU: run the f32 kernel and convert the floating outputs back.
TensorList run_half_via_f32(const OpDef& op, KernelFn kernel, const TensorList& inputs, const Attrs& attrs,
                            const MetaList& metas) {
  TensorList wide;
  for (const Tensor& t : inputs) wide.push_back(is_half(t.dtype()) ? cast_kernel(t, kF32) : t);
  MetaList wide_metas = metas;
  for (TensorMeta& m : wide_metas) {
    if (is_half(m.dtype)) m.dtype = kF32;
  }
  TensorList out = kernel(wide, attrs, wide_metas);
  for (size_t i = 0; i < out.size(); ++i) {
    if (is_half(metas[i].dtype)) out[i] = cast_kernel(out[i], metas[i].dtype);
  }
  return out;
}

}  // namespace

KernelFn kernel_for(const OpDef& op, Device device) {
  KernelFn kernel = op.kernels[op.device_independent ? 0 : static_cast<int>(device.type)];
  if (kernel == nullptr) {
    throw DeviceError(str_cat(op.name, ": no kernel for device ", device.str(),
                                   device.is_cuda() && !cuda_built() ? " (gradflow was built without CUDA)" : ""));
  }
  return kernel;
}

namespace {
thread_local Tensor* pending_output = nullptr;  // the innermost live OutputInto's destination
}  // namespace

OutputInto::OutputInto(Tensor destination) : destination_(std::move(destination)), previous_(pending_output) {
  pending_output = destination_.defined() ? &destination_ : nullptr;
}

OutputInto::~OutputInto() { pending_output = previous_; }

Tensor allocate_output(const TensorMeta& meta) {
  Tensor* dest = pending_output;
  if (dest != nullptr && dest->defined() && dest->shape() == meta.shape && dest->dtype() == meta.dtype &&
      dest->device() == meta.device && dest->is_contiguous()) {
    Tensor out = std::move(*dest);  // used once: later outputs get memory of their own
    *dest = Tensor();
    return out;
  }
  return empty(meta);
}

TensorList run_op(const OpDef& op, const TensorList& inputs, const Attrs& attrs) {
  internal::DenormalFlushScope flush_denormals;
  Device device = common_device(op, inputs);
  MetaList metas = op.infer(inputs, attrs);
  for (TensorMeta& m : metas) m.device = device;
  KernelFn kernel = kernel_for(op, device);
  bool any_half = false;
  if (device.is_cpu() && op.half_via_f32 && !op.device_independent) {
    for (const Tensor& t : inputs) any_half |= is_half(t.dtype());
  }
  TensorList outputs = any_half ? run_half_via_f32(op, kernel, inputs, attrs, metas) : kernel(inputs, attrs, metas);
  if (op.grad != nullptr && autodiff::any_tape_recording()) autodiff::record_op(op, inputs, outputs, attrs);
  return outputs;
}

void check_same_dtype(std::string_view op, const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype()) {
    throw DTypeError(str_cat(op, ": dtypes differ (", dtype_name(a.dtype()), " and ", dtype_name(b.dtype()),
                                  "); convert one with .to(dtype)"));
  }
}

void check_float(std::string_view op, const Tensor& t) {
  if (!is_floating(t.dtype())) {
    throw DTypeError(str_cat(op, ": expected a floating-point tensor, got ", dtype_name(t.dtype())));
  }
}

Strides broadcast_strides(const Tensor& t, absl::Span<const int64_t> out) {
  Strides s(out.size(), 0);
  size_t lead = out.size() - t.shape().size();
  for (size_t i = 0; i < t.shape().size(); ++i) {
    s[lead + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  }
  return s;
}

}  // namespace gradflow
