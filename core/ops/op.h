// The op registry: every op is defined once, by name, with its shape/dtype rule, a kernel per device
// type and its gradient, and every call goes through run_op(). A future graph mode traces the same
// OpDefs (name + inputs + attrs) and replays them.
//
// Adding an op (see core/ops/README.md): write its infer rule and gradient in the group's .cc file
// under core/ops/, its CPU kernel under core/ops/cpu/, its CUDA kernel under core/ops/cuda/, and give
// it a public function in ops.h that calls run_op().
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "core/tensor/tensor.h"

namespace gradflow {

using TensorList = absl::InlinedVector<Tensor, 3>;
using MetaList = absl::InlinedVector<TensorMeta, 2>;

using AttrValue = std::variant<int64_t, double, bool, std::vector<int64_t>, std::string, DType>;

// An op's non-tensor arguments (axes, keepdims, strides...). Keys are string literals.
class Attrs {
 public:
  Attrs() = default;
  Attrs(std::initializer_list<std::pair<std::string_view, AttrValue>> entries) : entries_(entries) {}

  bool has(std::string_view key) const { return find(key) != nullptr; }
  template <typename T>
  const T& get(std::string_view key) const {
    const AttrValue* v = find(key);
    if (v == nullptr) throw ValueError(str_cat("op attribute '", key, "' is missing"));
    const T* typed = std::get_if<T>(v);
    if (typed == nullptr) throw ValueError(str_cat("op attribute '", key, "' has another type"));
    return *typed;
  }
  template <typename T>
  T get_or(std::string_view key, T fallback) const {
    const AttrValue* v = find(key);
    return v == nullptr ? fallback : std::get<T>(*v);
  }
  void set(std::string_view key, AttrValue value);
  const std::vector<std::pair<std::string_view, AttrValue>>& entries() const { return entries_; }

 private:
  const AttrValue* find(std::string_view key) const {
    for (const auto& [k, v] : entries_) {
      if (k == key) return &v;
    }
    return nullptr;
  }
  std::vector<std::pair<std::string_view, AttrValue>> entries_;
};

// Shape/dtype rule: validates the inputs (throwing ShapeError/DTypeError/ValueError that name the op and
// the values) and describes the outputs.
using InferFn = MetaList (*)(const TensorList& inputs, const Attrs& attrs);
// Computes the outputs; `outputs` is what infer returned (with f32 in place of f16/bf16 when the op
// computes those in f32).
using KernelFn = TensorList (*)(const TensorList& inputs, const Attrs& attrs, const MetaList& outputs);

struct GradContext {
  const TensorList& inputs;
  const TensorList& outputs;
  const TensorList& grad_outputs;  // one per output, zeros where the output got no gradient
  const Attrs& attrs;
  // Bit k set: input k needs a gradient (it lies on a path from a source the tape differentiates for);
  // inputs from the 65th on always do. A gradient function may skip the others' (an undefined Tensor),
  // as TensorFlow's skip_input_indices lets MatMul's gradient skip the data's side.
  uint64_t needed = ~uint64_t{0};
  // Per input, where the tape would like its gradient written (GradientTape's GradientDestinationFn); null
  // or an undefined Tensor: anywhere. Given only where writing there directly is safe: the input is a
  // source read by this op alone, and no enclosing tape records the gradient computation. A gradient
  // function may honour it (matmul's does, through OutputInto) or not; the tape's caller checks.
  const TensorList* destinations = nullptr;
  bool needs(size_t k) const { return k >= 64 || ((needed >> k) & 1) != 0; }
  Tensor destination(size_t k) const {
    return destinations != nullptr && k < destinations->size() ? (*destinations)[k] : Tensor();
  }
};
// Returns one gradient per input, written with differentiable ops so that nested tapes see them
// (second derivatives); an undefined Tensor where an input gets no gradient.
using GradFn = TensorList (*)(const GradContext& ctx);

struct OpDef {
  std::string name;
  InferFn infer = nullptr;
  std::array<KernelFn, kNumDeviceTypes> kernels{};
  GradFn grad = nullptr;  // null: not differentiable (comparisons, argmax, ...)
  bool half_via_f32 = true;       // a CPU kernel sees f16/bf16 inputs converted to f32
  bool device_independent = false;  // views: the CPU kernel only changes metadata and serves every device
};

class OpRegistry {
 public:
  // The process-wide registry, filled with every op on first use.
  static OpRegistry& global();
  OpDef& define(OpDef def);  // ValueError if the name is taken
  // The op by name; ValueError naming it when absent.
  const OpDef& get(std::string_view name) const;
  OpDef& get_mutable(std::string_view name);
  void set_kernel(std::string_view name, DeviceType device, KernelFn kernel);
  std::vector<std::string> names() const;

 private:
  std::vector<std::unique_ptr<OpDef>> ops_;
};

inline const OpDef& op_def(std::string_view name) { return OpRegistry::global().get(name); }

// Runs an op eagerly: checks devices, applies the shape rule, runs the device's kernel, and records the
// call on every active GradientTape that watches an input.
TensorList run_op(const OpDef& op, const TensorList& inputs, const Attrs& attrs = {});
inline Tensor run_op1(const OpDef& op, const TensorList& inputs, const Attrs& attrs = {}) {
  return std::move(run_op(op, inputs, attrs)[0]);
}

// Lets a gradient function write its result where the tape's caller wants it (a data-parallel gradient
// bucket), sparing a copy: while an OutputInto lives on this thread, the first op output allocated with
// allocate_output() that matches `destination` (shape, dtype and device; destination contiguous) is
// `destination` itself, so the kernel writes there. An undefined destination does nothing; an op whose
// kernel allocates otherwise leaves it unused, so the caller checks where the result landed.
class OutputInto {
 public:
  explicit OutputInto(Tensor destination);
  ~OutputInto();
  OutputInto(const OutputInto&) = delete;
  OutputInto& operator=(const OutputInto&) = delete;

 private:
  Tensor destination_;
  Tensor* previous_;
};

// For kernels: the memory of an output described by meta (a new tensor, or the pending OutputInto's
// destination when it matches).
Tensor allocate_output(const TensorMeta& meta);

// The op's kernel for a device, or DeviceError naming the op and device.
KernelFn kernel_for(const OpDef& op, Device device);

// Shape-rule helpers shared by op groups.
void check_same_dtype(std::string_view op, const Tensor& a, const Tensor& b);
void check_float(std::string_view op, const Tensor& t);
// Element strides of t as seen from a tensor of shape `out` it broadcasts to (0 on broadcast dimensions).
Strides broadcast_strides(const Tensor& t, absl::Span<const int64_t> out);

}  // namespace gradflow
