// GradientTape: records the ops run in its lifetime and differentiates them, as in TensorFlow 2.
//
//   Variable w(random_normal({3, 2}), "w");
//   GradientTape tape;                       // records from here
//   Tensor loss = mean(square(matmul(x, w)));  // w is trainable: watched automatically
//   std::vector<Tensor> grads = tape.gradient(loss, {w});
//
// A tape records an op when one of its inputs is watched or was computed from a watched tensor.
// Non-persistent tapes allow one gradient() call (which ends recording); persistent tapes allow many.
// Gradients are computed with ordinary ops, so an enclosing tape records them: nested tapes give
// second derivatives. A source the target does not depend on gets an undefined Tensor (defined() ==
// false), not an error.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "core/autodiff/variable.h"
#include "core/ops/op.h"

namespace gradflow {

struct TapeOptions {
  bool persistent = false;
  bool watch_accessed_variables = true;  // trainable Variables read while recording are watched
};

// What gradient() differentiates with respect to: a tensor or a variable (its current value).
class GradSource {
 public:
  GradSource(const Tensor& t) : tensor_(t) {}                        // NOLINT: implicit by design
  GradSource(const Variable& v) : tensor_(v.value_unwatched()) {}    // NOLINT
  const Tensor& tensor() const { return tensor_; }

 private:
  Tensor tensor_;
};

class GradientTape {
 public:
  explicit GradientTape(TapeOptions options = {});
  ~GradientTape();
  GradientTape(const GradientTape&) = delete;
  GradientTape& operator=(const GradientTape&) = delete;

  void watch(const Tensor& t);
  void watch(const Variable& v);

  // d(sum of target * output_gradient)/d(source) for each source; output_gradient defaults to ones.
  std::vector<Tensor> gradient(const Tensor& target, const std::vector<GradSource>& sources,
                               const Tensor& output_gradient = Tensor());

  // Called once per source, on the calling thread, as soon as its gradient is final (no op left to run
  // can add to it) and before backward goes on: with the source's index and gradient (undefined when it
  // gets none). Sources the target does not reach come first. A data-parallel reducer uses it to start
  // communicating a layer's gradients while backward still computes the earlier layers'.
  using GradientReadyFn = std::function<void(size_t source_index, const Tensor& grad)>;
  std::vector<Tensor> gradient(const Tensor& target, const std::vector<GradSource>& sources,
                               const GradientReadyFn& on_ready, const Tensor& output_gradient = Tensor());

  // Where source k's gradient should be written (a tensor of its shape, dtype and device, or undefined:
  // anywhere); asked once per source before backward runs. A data-parallel reducer passes its bucket's
  // slot, so that the op computing the gradient writes there and no copy follows. A hint: backward writes
  // there only when that is safe and cheap (the source is a leaf that one op reads once, its gradient
  // function supports it, as matmul's does, and no enclosing tape records this backward); the gradient
  // returned and given to on_ready then shares the destination's memory. Otherwise it lands elsewhere.
  using GradientDestinationFn = std::function<Tensor(size_t source_index)>;
  struct Hooks {
    GradientReadyFn on_ready;
    GradientDestinationFn destination;
  };
  std::vector<Tensor> gradient(const Tensor& target, const std::vector<GradSource>& sources, const Hooks& hooks,
                               const Tensor& output_gradient = Tensor());

  // Pauses recording while the returned object lives (TF's `with tape.stop_recording():`).
  class Pause {
   public:
    explicit Pause(GradientTape& tape);
    ~Pause();
    Pause(const Pause&) = delete;
    Pause& operator=(const Pause&) = delete;

   private:
    GradientTape& tape_;
    bool was_recording_;
  };
  Pause stop_recording() { return Pause(*this); }

  // Variables watched so far, in first-watch order.
  std::vector<Variable> watched_variables() const;
  // Forgets everything recorded and starts recording afresh.
  void reset();

  struct State;

 private:
  std::unique_ptr<State> state_;
};

// A tensor with the same value that tapes do not trace through (its gradient is not propagated).
Tensor stop_gradient(const Tensor& t);

namespace autodiff {
// Hooks used by run_op and Variable; cheap when no tape is active on this thread.
bool any_tape_recording();
void record_op(const OpDef& op, const TensorList& inputs, const TensorList& outputs, const Attrs& attrs);
void variable_read(const Variable& v);

// While it lives, this thread records as a thread of its own would: on none of the tapes that were
// active here, recording not suspended (MirroredStrategy runs a replica's step on the calling thread).
class SeparateRecording {
 public:
  SeparateRecording();
  ~SeparateRecording();
  SeparateRecording(const SeparateRecording&) = delete;
  SeparateRecording& operator=(const SeparateRecording&) = delete;

 private:
  std::vector<GradientTape::State*> tapes_;
  bool suspended_;
};

// Stops every tape on this thread from recording while it lives (for optimizer updates, metrics).
class SuspendRecording {
 public:
  SuspendRecording();
  ~SuspendRecording();
  SuspendRecording(const SuspendRecording&) = delete;
  SuspendRecording& operator=(const SuspendRecording&) = delete;

 private:
  bool previous_;
};
}  // namespace autodiff

}  // namespace gradflow
