#include "core/autodiff/variable.h"

#include "core/autodiff/tape.h"
#include "core/ops/internal.h"
#include "core/ops/ops.h"

namespace gradflow {

Variable::Variable(Tensor initial_value, std::string name, bool trainable, VariableAggregation aggregation) {
  if (!initial_value.defined()) throw StateError(str_cat("Variable '", name, "': initial value is undefined"));
  // A variable owns its memory: it must not alias the caller's tensor, which assign() would overwrite.
  Tensor owned = empty(initial_value.shape(), initial_value.dtype(), initial_value.device());
  copy_into(owned, initial_value);
  state_ = std::make_shared<State>(State{std::move(owned), std::move(name), trainable, aggregation});
}

Variable Variable::aliasing(Tensor memory, std::string name, bool trainable) {
  if (!memory.defined()) throw StateError(str_cat("Variable '", name, "': aliased memory is undefined"));
  Variable v;
  v.state_ = std::make_shared<State>(State{std::move(memory), std::move(name), trainable, VariableAggregation::kNone});
  return v;
}

namespace {
thread_local int mirror_replica = -1;
thread_local bool refresh_deferred = false;
}  // namespace

DeferMirrorRefresh::DeferMirrorRefresh() : previous_(refresh_deferred) { refresh_deferred = true; }
DeferMirrorRefresh::~DeferMirrorRefresh() { refresh_deferred = previous_; }

MirrorReplicaScope::MirrorReplicaScope(int replica) : previous_(mirror_replica) { mirror_replica = replica; }
MirrorReplicaScope::~MirrorReplicaScope() { mirror_replica = previous_; }
int current_mirror_replica() { return mirror_replica; }

const Tensor& Variable::value_unwatched() const {
  if (state_ == nullptr) throw StateError("use of an uninitialised Variable");
  if (!state_->mirrors.empty() && mirror_replica > 0) {
    if (static_cast<size_t>(mirror_replica) > state_->mirrors.size()) {
      throw StateError(str_cat("Variable '", state_->name, "' has ", state_->mirrors.size() + 1,
                               " replicas' copies; replica ", mirror_replica, " read it (the strategy copied the ",
                               "variables for fewer replicas)"));
    }
    return state_->mirrors[mirror_replica - 1];
  }
  return state_->value;
}

void Variable::mirror_on(const std::vector<Device>& devices) {
  if (state_ == nullptr) throw StateError("use of an uninitialised Variable");
  if (devices.empty()) throw ValueError(str_cat("Variable '", state_->name, "'.mirror_on: no devices"));
  // On a replica's thread the others may be reading the copies this would replace.
  if (mirror_replica >= 0) throw StateError(str_cat("Variable '", state_->name, "'.mirror_on: called on a replica's thread"));
  if (state_->value.device() != devices[0]) {
    throw DeviceError(str_cat("Variable '", state_->name, "' lives on ", state_->value.device().str(), " but replica 0 runs on ",
                              devices[0].str(), ": create the model inside the strategy's scope()"));
  }
  state_->mirrors.clear();
  for (size_t r = 1; r < devices.size(); ++r) {
    Tensor copy = empty(state_->value.shape(), state_->value.dtype(), devices[r]);
    copy_into(copy, state_->value.to(devices[r]));
    state_->mirrors.push_back(std::move(copy));
  }
}

void Variable::refresh_mirrors() const {
  if (state_ == nullptr || state_->mirrors.empty() || mirror_replica > 0) return;
  for (const Tensor& mirror : state_->mirrors) copy_into(mirror, state_->value.to(mirror.device()));
}

const Tensor& Variable::value() const {
  const Tensor& v = value_unwatched();
  if (autodiff::any_tape_recording()) autodiff::variable_read(*this);
  return v;
}

const std::string& Variable::name() const {
  value_unwatched();
  return state_->name;
}

bool Variable::trainable() const {
  value_unwatched();
  return state_->trainable;
}

VariableAggregation Variable::aggregation() const {
  value_unwatched();
  return state_->aggregation;
}

void Variable::assign(const Tensor& value) {
  const Tensor& current = value_unwatched();
  if (value.shape() != current.shape() || value.dtype() != current.dtype()) {
    throw ShapeError(str_cat("Variable '", state_->name, "'.assign: value ", shape_str(value.shape()), " ",
                                  dtype_name(value.dtype()), " does not match the variable's ",
                                  shape_str(current.shape()), " ", dtype_name(current.dtype())));
  }
  copy_into(current, value.device() == current.device() ? value : value.to(current.device()));
  if (mirror_replica < 0 && !refresh_deferred) refresh_mirrors();  // outside the replicas: every copy
}

void Variable::assign_add(const Tensor& delta) {
  autodiff::SuspendRecording no_record;
  assign(add(value_unwatched(), delta));
}

void Variable::assign_sub(const Tensor& delta) {
  autodiff::SuspendRecording no_record;
  assign(sub(value_unwatched(), delta));
}

}  // namespace gradflow
