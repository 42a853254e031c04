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

const Tensor& Variable::value_unwatched() const {
  if (state_ == nullptr) throw StateError("use of an uninitialised Variable");
  return state_->value;
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
