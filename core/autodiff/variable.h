// Variable: a named, mutable tensor holder, like tf.Variable. Layers own their weights as Variables and
// optimizers update them in place. Copies of a Variable are handles to the same variable.
//
//   Variable w(zeros({784, 128}), "dense/kernel");
//   Tensor y = matmul(x, w.value());    // reading a trainable variable inside a tape watches it
//   w.assign_sub(lr * grad);
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace gradflow {

// How data-parallel replicas (separate processes) keep a variable that each updates by itself rather
// than through the optimizer, as tf.VariableAggregation with ON_READ synchronization:
// kNone (the default): the replicas' copies stay equal on their own (weights: identical updates).
// kMean: each replica updates its own copy (BatchNormalization's moving statistics, from its own rows);
//   the strategy replaces every copy by the replicas' mean at the end of each fit epoch and before each
//   sharded checkpoint, so what evaluation after an epoch and checkpoints see is the same everywhere.
enum class VariableAggregation : uint8_t { kNone, kMean };

// The replica whose copies of mirrored variables this thread reads and writes (Variable::mirror_on),
// for the scope's lifetime; -1 (outside every replica) by default.
class MirrorReplicaScope {
 public:
  explicit MirrorReplicaScope(int replica);
  ~MirrorReplicaScope();
  MirrorReplicaScope(const MirrorReplicaScope&) = delete;
  MirrorReplicaScope& operator=(const MirrorReplicaScope&) = delete;

 private:
  int previous_;
};
int current_mirror_replica();

// While one lives on this thread, assign() leaves the mirrors alone: the caller refreshes them once after
// several writes (an optimizer's update).
class DeferMirrorRefresh {
 public:
  DeferMirrorRefresh();
  ~DeferMirrorRefresh();
  DeferMirrorRefresh(const DeferMirrorRefresh&) = delete;
  DeferMirrorRefresh& operator=(const DeferMirrorRefresh&) = delete;

 private:
  bool previous_;
};

class Variable {
 public:
  Variable() = default;
  explicit Variable(Tensor initial_value, std::string name = "Variable", bool trainable = true,
                    VariableAggregation aggregation = VariableAggregation::kNone);

  // A variable over existing memory, without a copy: its value is `memory` itself, and writes go there.
  // For updating part of a variable in place (Optimizer::update_part's views); an ordinary variable owns
  // its memory.
  static Variable aliasing(Tensor memory, std::string name, bool trainable = false);

  bool defined() const { return state_ != nullptr; }
  // The current value; inside a recording tape a trainable variable's read watches it.
  const Tensor& value() const;
  operator const Tensor&() const { return value(); }  // NOLINT: lets ops take variables directly
  const std::string& name() const;
  bool trainable() const;
  VariableAggregation aggregation() const;
  const Shape& shape() const { return value_unwatched().shape(); }
  DType dtype() const { return value_unwatched().dtype(); }
  Device device() const { return value_unwatched().device(); }
  uint64_t id() const { return value_unwatched().id(); }

  // Overwrite the value in place (same storage and tensor id); shape and dtype must match.
  void assign(const Tensor& value);
  void assign_add(const Tensor& delta);
  void assign_sub(const Tensor& delta);

  // The value without notifying tapes (for optimizers, checkpoints and printing).
  const Tensor& value_unwatched() const;

  // Replicas on several devices (MirroredStrategy over GPUs): replica r > 0 reads and writes its own copy
  // of the variable on devices[r] (a mirror), as a MirrorReplicaScope(r) on its thread selects; replica 0
  // and every thread outside the replicas use the variable itself, which must live on devices[0]
  // (DeviceError otherwise). A write
  // outside the replicas (assign; an optimizer's update, which calls refresh_mirrors) reaches every
  // copy. Call before the replicas run; again with other devices to re-place them.
  void mirror_on(const std::vector<Device>& devices);
  // Copies the value into every mirror (after an in-place update outside the replicas).
  void refresh_mirrors() const;
  bool mirrored() const { return state_ != nullptr && !state_->mirrors.empty(); }
  bool same_as(const Variable& other) const { return state_ == other.state_; }

 private:
  struct State {
    Tensor value;
    std::string name;
    bool trainable;
    VariableAggregation aggregation;
    std::vector<Tensor> mirrors;  // replica r > 0's copy at r - 1
  };
  std::shared_ptr<State> state_;
};

}  // namespace gradflow
