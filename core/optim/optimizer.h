// Optimizer: the base of keras.optimizers-style optimizers (optimizers.h): it applies gradients to
// Variables, owns the per-variable slot variables and the iteration counter, and implements what every
// optimizer shares: gradient clipping, decoupled weight decay and learning-rate schedules.
//
//   optimizers::Adam adam({.learning_rate = 1e-3, .global_clipnorm = 1.0});
//   GradientTape tape;
//   Tensor loss = mean(square(matmul(x, w) - y));
//   adam.apply_gradients(tape.gradient(loss, {w}), {w});
//   adam.iterations();   // 1
//
// Semantics follow Keras 3's optimizer.apply(grads, vars), step by step:
//   1. an undefined gradient (a source the loss does not depend on) skips its variable;
//   2. clipping: clipnorm scales each gradient to an L2 norm of at most clipnorm; global_clipnorm scales
//      all gradients together so their joint norm is at most global_clipnorm; clipvalue limits each
//      element to [-clipvalue, clipvalue] (at most one of the three may be set);
//   3. weight decay (when set): var -= var * weight_decay * learning_rate, decoupled from the gradient;
//   4. the optimizer's update, with learning_rate = schedule(iterations) and t = iterations + 1;
//   5. iterations += 1.
// Updates are never recorded on GradientTapes. f32/f64 CPU variables whose gradient is contiguous (as
// tapes produce them) get a fused loop (one pass over the variable, gradient and slots, in place); the
// others (CUDA, f16/bf16, strided gradients) are updated with ops on their device.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/autodiff/variable.h"
#include "core/optim/schedules.h"
#include "core/tensor/tensor.h"

namespace gradflow {
class ThreadedUpdate;
}

namespace gradflow::optimizers {

// The options every optimizer takes (Keras 3's base Optimizer arguments). Each optimizer's own options
// struct repeats these fields so that one designated initializer sets them all.
struct BaseOptions {
  LearningRate learning_rate = 1e-3;
  std::optional<double> weight_decay;
  std::optional<double> clipnorm;
  std::optional<double> clipvalue;
  std::optional<double> global_clipnorm;
  std::string name;
};

// The BaseOptions fields of any optimizer's options struct.
template <typename Options>
BaseOptions base_options(const Options& o) {
  return {o.learning_rate, o.weight_decay, o.clipnorm, o.clipvalue, o.global_clipnorm, o.name};
}

// A slot variable every trained variable gets from an optimizer (e.g. Adam's first moment "adam_m").
struct SlotSpec {
  std::string name;  // the suffix after "<variable name>/"
  double initial_value = 0;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update step: grads[i] (same shape, dtype and device as vars[i], or undefined to skip it) is
  // applied to vars[i]. ValueError when the counts differ or every gradient is undefined; ShapeError,
  // DTypeError or DeviceError when a gradient does not match its variable.
  // Under a strategy whose replicas share the variables on threads (MirroredStrategy's run), every
  // replica calls it and the update happens once (ReplicaContext::merge_call); ValueError when replicas
  // pass different gradients (strategy.gradient() gives them all the same average). `scale` multiplies
  // every gradient inside the update, at no extra pass (a data-parallel step hands over the replicas'
  // sums and 1 / their total weight); clipnorm and global_clipnorm see the scaled gradients.
  void apply_gradients(const std::vector<Tensor>& grads, const std::vector<Variable>& vars, double scale = 1.0);
  // Creates the slot variables of `vars` now (apply_gradients creates them on a variable's first update);
  // call it before restoring variables() from a checkpoint.
  void build(const std::vector<Variable>& vars);

  // The slot variables of var (built now if need be), in the order of the optimizer's slots.
  std::vector<Variable> slots(const Variable& var);

  // A split update (DataParallelOptions::shard_update): data-parallel replicas that share one copy of the
  // variables and their slots each update their own part of every variable. update_part gives the flat
  // elements [begin, end) of var and of its slots as variables over the same memory (building the slots
  // if need be); apply_gradient_parts is apply_gradients on such parts: grads[i] is the gradient of
  // parts[i]'s elements (flat and contiguous; undefined skips it), and the iteration counter advances once,
  // also when this replica's parts are empty. Every replica calls it at the same step, so the learning
  // rate and t are the same for all. Only where splits_elementwise(). Replicas on threads that share
  // this optimizer (MirroredStrategy's) may call it at once on parts that do not overlap, each with
  // advance = false: the calling thread then advances the counter once, after all of them
  // (advance_iterations), so that every part sees the same step.
  struct UpdatePart {
    Variable values;
    std::vector<Variable> slots;
  };
  UpdatePart update_part(const Variable& var, int64_t begin, int64_t end);
  void apply_gradient_parts(const std::vector<Tensor>& grads, const std::vector<UpdatePart>& parts, double scale = 1.0,
                            bool advance = true);
  void advance_iterations();
  // Whether each element's update depends on that element alone (no clipnorm or global_clipnorm, which
  // need whole gradients' norms), so that parts of a variable can be updated apart.
  bool splits_elementwise() const { return elementwise() && !base_.clipnorm && !base_.global_clipnorm; }

  // Updates applied so far.
  int64_t iterations() const;
  // The learning rate the next update uses: the constant, or the schedule at iterations().
  double learning_rate() const;
  void set_learning_rate(LearningRate learning_rate) { learning_rate_ = std::move(learning_rate); }
  // Keras' config name: "SGD", "adam", "adamw", "rmsprop", "adagrad" unless options.name was given.
  const std::string& name() const { return base_.name; }
  // The hyperparameters by Keras' config keys ("learning_rate" is the current value; unset optional
  // options are left out; booleans are 0 or 1).
  virtual std::map<std::string, double> get_config() const;

  // What a checkpoint saves: the iteration counter (an i64 scalar named "iteration"), then every slot
  // variable in creation order, named "<variable name>/<slot>" (e.g. "dense/kernel/adam_m").
  std::vector<Variable> variables() const;
  // The slot `slot` (e.g. "adam_m") of `var`; StateError when it has none (not built, or no such slot).
  Variable get_slot(const Variable& var, std::string_view slot) const;

 protected:
  // apply_gradients' update itself, on this thread.
  void apply_once(const std::vector<Tensor>& grads, const std::vector<Variable>& vars, double scale);

  // What update_step needs besides the tensors.
  struct Step {
    int64_t t = 1;         // 1 for the first update (iterations + 1)
    double lr = 0;         // learning_rate()
    double grad_scale = 1;  // clipnorm / global_clipnorm factor to multiply the gradient by
    double clipvalue = 0;  // the limit of each gradient element; +inf without clipvalue
    double decay = 0;      // weight_decay * lr; the update starts with var -= var * decay
  };

  // Whether update_step treats every element alone, whatever the tensor's shape (true for the built-in
  // optimizers): then a flat part of a variable can be updated by itself (update_part).
  virtual bool elementwise() const { return false; }

  // `slots`: the slot variables every trained variable gets, in the order update_step receives them.
  Optimizer(BaseOptions base, std::vector<SlotSpec> slots);

  // Applies one variable's update. The gradient is as given (unclipped); `slots` follow the SlotSpecs.
  virtual void update_step(const Tensor& grad, Variable var, const std::vector<Variable>& slots,
                           const Step& step) = 0;

  // For op-based update paths: the gradient after clipping, and the weight decay applied to var.
  static Tensor clipped_gradient(const Tensor& grad, const Step& step);
  static void apply_weight_decay(Variable var, const Step& step);

 private:
  // Replicas on threads that share the variables each update a part of them (apply_gradients inside
  // MirroredStrategy's run): the parts, kept while the variables stay the same.
  std::shared_ptr<ThreadedUpdate> split_update_;

  struct Entry {
    Variable var;
    std::vector<Variable> slots;
  };
  const Entry& entry_for(const Variable& var);
  // The indices of the defined gradients, each checked against what it updates (variable_of(i)).
  template <typename VariableOf>
  std::vector<size_t> present_gradients(const std::vector<Tensor>& grads, VariableOf&& variable_of) const {
    std::vector<size_t> present;
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!grads[i].defined()) continue;  // Keras skips a None gradient
      check_gradient(grads[i], variable_of(i));
      present.push_back(i);
    }
    return present;
  }
  // The step's constants for gradients multiplied by scale (global_clipnorm from `grads`' norms).
  Step make_step(const std::vector<Tensor>& grads, const std::vector<size_t>& present, double scale) const;
  void check_scale(double scale) const;
  void check_gradient(const Tensor& grad, const Variable& var) const;

  BaseOptions base_;
  LearningRate learning_rate_;
  std::vector<SlotSpec> slot_specs_;
  Variable iterations_;
  std::vector<Entry> entries_;
  std::map<uint64_t, size_t> index_;  // variable id -> entries_ index
};

// An optimizer by Keras name with its defaults: "sgd", "adam", "adamw", "rmsprop", "adagrad" (case
// insensitive); ValueError naming the unknown name and the known ones.
std::unique_ptr<Optimizer> make_optimizer(std::string_view name);

}  // namespace gradflow::optimizers
