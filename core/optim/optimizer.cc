#include "core/optim/optimizer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/autodiff/tape.h"
#include "core/nn/replica_context.h"
#include "core/nn/threaded_update.h"
#include "core/ops/ops.h"
#include "core/optim/fused.h"
#include "core/optim/optimizers.h"
#include "core/tensor/error.h"

namespace gradflow::optimizers {
namespace {

// The squared L2 norm of g, in double; a host loop for contiguous f32/f64 CPU tensors.
double squared_norm(const Tensor& g) {
  auto host = [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = g.data<T>();
    double total = 0;
    for (int64_t i = 0, n = g.numel(); i < n; ++i) total += static_cast<double>(p[i]) * static_cast<double>(p[i]);
    return total;
  };
  if (internal::host_contiguous(g, kF32)) return host(TypeTag<float>{});
  if (internal::host_contiguous(g, kF64)) return host(TypeTag<double>{});
  return sum(square(g.to(kF64))).item();
}

// Keras' clip_by_norm factor: norm <= limit keeps the gradient, else it is scaled to norm == limit.
double clip_factor(double norm, double limit) { return limit / std::max(norm, limit); }

std::string describe(const Tensor& t) {
  return str_cat(shape_str(t.shape()), " ", dtype_name(t.dtype()), " ", t.device().str());
}

}  // namespace

Optimizer::Optimizer(BaseOptions base, std::vector<SlotSpec> slots)
    : base_(std::move(base)), learning_rate_(base_.learning_rate), slot_specs_(std::move(slots)) {
  int clip_options = base_.clipnorm.has_value() + base_.clipvalue.has_value() + base_.global_clipnorm.has_value();
  GF_CHECK(clip_options <= 1, ValueError, base_.name,
           ": only one of clipnorm, clipvalue and global_clipnorm can be set");
  for (const auto& [option, value] : {std::pair{"clipnorm", base_.clipnorm}, std::pair{"clipvalue", base_.clipvalue},
                                      std::pair{"global_clipnorm", base_.global_clipnorm}}) {
    GF_CHECK(!value || *value > 0, ValueError, base_.name, ": ", option, " must be > 0, got ", value.value_or(0));
  }
  iterations_ = Variable(scalar(0, kI64), "iteration", /*trainable=*/false);
}

int64_t Optimizer::iterations() const { return *iterations_.value_unwatched().data<int64_t>(); }

double Optimizer::learning_rate() const { return learning_rate_.at(iterations()); }

void Optimizer::check_gradient(const Tensor& grad, const Variable& var) const {
  const Tensor& value = var.value_unwatched();
  auto what = [&] {
    return str_cat(base_.name, ".apply_gradients: gradient ", describe(grad), " for variable '", var.name(), "' ",
                   describe(value));
  };
  GF_CHECK(grad.shape() == value.shape(), ShapeError, what(), ": shapes differ");
  GF_CHECK(grad.dtype() == value.dtype(), DTypeError, what(), ": dtypes differ");
  GF_CHECK(grad.device() == value.device(), DeviceError, what(), ": devices differ");
}

const Optimizer::Entry& Optimizer::entry_for(const Variable& var) {
  auto found = index_.find(var.id());
  if (found != index_.end()) return entries_[found->second];
  const Tensor& value = var.value_unwatched();
  Entry entry{var, {}};
  for (const SlotSpec& spec : slot_specs_) {
    entry.slots.emplace_back(full(value.shape(), spec.initial_value, value.dtype(), value.device()),
                             str_cat(var.name(), "/", spec.name), /*trainable=*/false);
  }
  index_.emplace(var.id(), entries_.size());
  entries_.push_back(std::move(entry));
  return entries_.back();
}

void Optimizer::build(const std::vector<Variable>& vars) {
  for (const Variable& var : vars) entry_for(var);
}

namespace {

// One replica's apply_gradients arguments, as merge_call passes them around.
struct UpdateArgs {
  const std::vector<Tensor>* grads;
  const std::vector<Variable>* vars;
  double scale;
  bool* split;  // set by the merge: every replica updates its part (ThreadedUpdate::apply_part)
};

bool same_values(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  if (a.raw_data() == b.raw_data() && a.strides() == b.strides()) return true;  // one tensor, shared
  Tensor ca = a.contiguous().to(kCPU), cb = b.contiguous().to(kCPU);
  return std::memcmp(ca.raw_data(), cb.raw_data(), static_cast<size_t>(ca.numel()) * dtype_size(ca.dtype())) == 0;
}

// Replicas sharing the variables update them once, so each must ask for the same update. Gradients on
// different devices (MirroredStrategy over devices) are compared by value only when `across_devices`
// (the first update: a loop that passes each replica's own gradients does so from its first step),
// since comparing means copying them to the host.
void check_same_update(const std::string& optimizer, const UpdateArgs& first, const UpdateArgs& other, size_t replica,
                       bool across_devices) {
  auto fail = [&](const std::string& what) {
    throw ValueError(str_cat(optimizer, ".apply_gradients: replica ", replica, "'s ", what, " replica 0's; under ",
                             "MirroredStrategy's run(), replicas share the variables and update them once: pass the ",
                             "gradients of strategy.gradient() (averaged across replicas)"));
  };
  if (other.grads->size() != first.grads->size() || other.vars->size() != first.vars->size()) {
    fail("gradient or variable count differs from");
  }
  if (other.scale != first.scale) fail("gradient scale differs from");
  for (size_t i = 0; i < first.vars->size(); ++i) {
    if ((*other.vars)[i].name() != (*first.vars)[i].name()) fail(str_cat("variable ", i, " is not"));
    const Tensor& a = (*first.grads)[i];
    const Tensor& b = (*other.grads)[i];
    const bool compare = a.defined() && (across_devices || a.device() == b.device());
    if (a.defined() != b.defined() || (compare && !same_values(a, b))) {
      fail(str_cat("gradient for \"", (*first.vars)[i].name(), "\" differs from"));
    }
  }
}

}  // namespace

void Optimizer::apply_gradients(const std::vector<Tensor>& grads, const std::vector<Variable>& vars, double scale) {
  ReplicaContext* ctx = current_replica_context();
  if (ctx == nullptr) {
    apply_once(grads, vars, scale);
    return;
  }
  bool split = false;
  UpdateArgs mine{&grads, &vars, scale, &split};
  ctx->merge_call(&mine, [&](const std::vector<const void*>& all) {
    const UpdateArgs& first = *static_cast<const UpdateArgs*>(all[0]);
    const bool first_update = iterations() == 0;
    for (size_t r = 1; r < all.size(); ++r) {
      check_same_update(base_.name, first, *static_cast<const UpdateArgs*>(all[r]), r, first_update);
    }
    check_scale(first.scale);
    // Replicas sharing host variables: each updates its part at once, rather than one for all while
    // the others wait. Every replica's gradients are checked here: once split, a replica that failed in
    // its part would leave the others' parts updated.
    const auto fits = [&](const void* args) {
      return ThreadedUpdate::fits(*first.vars, *static_cast<const UpdateArgs*>(args)->grads);
    };
    if (all.size() > 1 && ctx->in_process() && std::all_of(all.begin(), all.end(), fits)) {
      if (!split_update_ || !split_update_->matches(*first.vars, *this)) {
        split_update_ = ThreadedUpdate::make(*ctx, *first.vars, *this);
      }
      if (split_update_) {
        for (const void* args : all) *static_cast<const UpdateArgs*>(args)->split = true;
        return;
      }
    }
    apply_once(*first.grads, *first.vars, first.scale);
  });
  if (!split) return;
  split_update_->apply_part(ctx->replica_id(), grads, scale);
  ctx->merge_call(nullptr, [&](const std::vector<const void*>&) { advance_iterations(); });  // after every part
}

void Optimizer::check_scale(double scale) const {
  GF_CHECK(std::isfinite(scale) && scale > 0, ValueError, base_.name, ".apply_gradients: scale must be positive, got ",
           scale);
}

Optimizer::Step Optimizer::make_step(const std::vector<Tensor>& grads, const std::vector<size_t>& present,
                                     double scale) const {
  Step step;
  step.t = iterations() + 1;
  step.lr = learning_rate();
  step.clipvalue = base_.clipvalue.value_or(std::numeric_limits<double>::infinity());
  step.decay = base_.weight_decay ? *base_.weight_decay * step.lr : 0.0;
  // The gradients are grads x scale: the norms too (and the update multiplies by it in its own pass).
  step.grad_scale = scale;
  if (base_.global_clipnorm) {
    double total = 0;
    for (size_t i : present) total += squared_norm(grads[i]);
    step.grad_scale = scale * clip_factor(std::sqrt(total) * scale, *base_.global_clipnorm);
  }
  return step;
}

void Optimizer::apply_once(const std::vector<Tensor>& grads, const std::vector<Variable>& vars, double scale) {
  GF_CHECK(grads.size() == vars.size(), ValueError, base_.name, ".apply_gradients: ", grads.size(),
           " gradients for ", vars.size(), " variables");
  check_scale(scale);
  autodiff::SuspendRecording no_record;
  const std::vector<size_t> present = present_gradients(grads, [&](size_t i) -> const Variable& { return vars[i]; });
  GF_CHECK(!present.empty(), ValueError, base_.name, ".apply_gradients: no gradients provided for any variable");

  const Step step = make_step(grads, present, scale);
  DeferMirrorRefresh once;  // an update may assign a variable several times: its copies follow once, below
  for (size_t i : present) {
    Step own = step;
    if (base_.clipnorm) own.grad_scale = scale * clip_factor(std::sqrt(squared_norm(grads[i])) * scale, *base_.clipnorm);
    update_step(grads[i], vars[i], entry_for(vars[i]).slots, own);
    vars[i].refresh_mirrors();  // the update may have written the value in place (MirroredStrategy's copies)
  }
  *iterations_.value_unwatched().data<int64_t>() += 1;
}

std::vector<Variable> Optimizer::slots(const Variable& var) { return entry_for(var).slots; }

Optimizer::UpdatePart Optimizer::update_part(const Variable& var, int64_t begin, int64_t end) {
  GF_CHECK(splits_elementwise(), StateError, base_.name, ": its update of an element depends on other elements ",
           "(clipnorm, global_clipnorm, or an optimizer that is not elementwise): it cannot be split in parts");
  const Tensor& value = var.value_unwatched();
  GF_CHECK(value.is_contiguous() && 0 <= begin && begin <= end && end <= value.numel(), ValueError, base_.name,
           ".update_part: elements [", begin, ", ", end, ") of '", var.name(), "' ", describe(value),
           " (a contiguous variable's flat elements)");
  auto flat = [&](const Tensor& t) { return make_view(t, {end - begin}, {1}, t.offset() + begin); };
  UpdatePart part{Variable::aliasing(flat(value), var.name()), {}};
  for (const Variable& slot : entry_for(var).slots) {
    GF_CHECK(slot.value_unwatched().is_contiguous(), ValueError, base_.name, ".update_part: slot '", slot.name(),
             "' is not contiguous");
    part.slots.push_back(Variable::aliasing(flat(slot.value_unwatched()), slot.name()));
  }
  return part;
}

void Optimizer::apply_gradient_parts(const std::vector<Tensor>& grads, const std::vector<UpdatePart>& parts,
                                     double scale, bool advance) {
  GF_CHECK(grads.size() == parts.size(), ValueError, base_.name, ".apply_gradient_parts: ", grads.size(),
           " gradients for ", parts.size(), " parts");
  GF_CHECK(splits_elementwise(), StateError, base_.name, ".apply_gradient_parts: the update cannot be split in parts");
  check_scale(scale);
  autodiff::SuspendRecording no_record;
  const std::vector<size_t> present =
      present_gradients(grads, [&](size_t i) -> const Variable& { return parts[i].values; });
  const Step step = make_step(grads, present, scale);
  for (size_t i : present) update_step(grads[i], parts[i].values, parts[i].slots, step);
  if (advance) advance_iterations();
}

void Optimizer::advance_iterations() { *iterations_.value_unwatched().data<int64_t>() += 1; }

Tensor Optimizer::clipped_gradient(const Tensor& grad, const Step& step) {
  Tensor g = step.grad_scale == 1 ? grad : grad * step.grad_scale;
  return std::isfinite(step.clipvalue) ? clip(g, -step.clipvalue, step.clipvalue) : g;
}

void Optimizer::apply_weight_decay(Variable var, const Step& step) {
  if (step.decay == 0) return;
  const Tensor& value = var.value_unwatched();
  var.assign(value - value * step.decay);
}

std::map<std::string, double> Optimizer::get_config() const {
  std::map<std::string, double> config{{"learning_rate", learning_rate()}};
  if (base_.weight_decay) config["weight_decay"] = *base_.weight_decay;
  if (base_.clipnorm) config["clipnorm"] = *base_.clipnorm;
  if (base_.clipvalue) config["clipvalue"] = *base_.clipvalue;
  if (base_.global_clipnorm) config["global_clipnorm"] = *base_.global_clipnorm;
  return config;
}

std::vector<Variable> Optimizer::variables() const {
  std::vector<Variable> out{iterations_};
  for (const Entry& entry : entries_) out.insert(out.end(), entry.slots.begin(), entry.slots.end());
  return out;
}

Variable Optimizer::get_slot(const Variable& var, std::string_view slot) const {
  auto found = index_.find(var.id());
  GF_CHECK(found != index_.end(), StateError, base_.name, ".get_slot: variable '", var.name(),
           "' has no slots yet (call build() or apply_gradients() first)");
  for (size_t k = 0; k < slot_specs_.size(); ++k) {
    if (slot_specs_[k].name == slot) return entries_[found->second].slots[k];
  }
  std::string known;
  for (const SlotSpec& spec : slot_specs_) known += (known.empty() ? "" : ", ") + spec.name;
  throw StateError(str_cat(base_.name, ".get_slot: no slot '", std::string(slot), "' (slots: ",
                           known.empty() ? "none" : known, ")"));
}

std::unique_ptr<Optimizer> make_optimizer(std::string_view name) {
  std::string key(name);
  std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) { return std::tolower(c); });
  if (key == "sgd") return std::make_unique<SGD>();
  if (key == "adam") return std::make_unique<Adam>();
  if (key == "adamw") return std::make_unique<AdamW>();
  if (key == "rmsprop") return std::make_unique<RMSprop>();
  if (key == "adagrad") return std::make_unique<Adagrad>();
  throw ValueError(str_cat("make_optimizer: unknown optimizer '", std::string(name),
                           "' (known: sgd, adam, adamw, rmsprop, adagrad)"));
}

}  // namespace gradflow::optimizers
