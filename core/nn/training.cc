// compile / fit / evaluate / predict over in-memory tensors.
#include "core/nn/training.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <optional>
#include <utility>

#include "core/autodiff/tape.h"
#include "core/nn/batch_prefetcher.h"
#include "core/nn/replica_context.h"
#include "core/nn/threaded_update.h"
#include "core/trace/trace.h"
#include "core/ops/ops.h"

namespace gradflow {

OptimizerSpec::OptimizerSpec(const char* name) : optimizer(optimizers::make_optimizer(name)) {}
LossSpec::LossSpec(const char* n) : loss(losses::make_loss(n)), name(n) {}

double current_learning_rate(const TrainingConfig& t) { return t.optimizer->learning_rate(); }
void set_learning_rate(TrainingConfig& t, double lr) { t.optimizer->set_learning_rate(optimizers::LearningRate(lr)); }

namespace {

TrainingConfig& config(ModelImpl& model) {
  if (!model.training) {
    throw StateError(str_cat(model.name(), ": call compile(model, optimizer, loss, metrics) before fit/evaluate"));
  }
  return *model.training;
}

void check_pair(const std::string& where, const Tensor& x, const Tensor& y) {
  if (x.rank() == 0 || y.rank() == 0 || x.dim(0) != y.dim(0)) {
    throw ShapeError(str_cat(where, ": x ", shape_str(x.shape()), " and y ", shape_str(y.shape()),
                             " must have the same number of examples (first dimension)"));
  }
}

// Mean of the per-batch losses weighted by batch size, as Keras reports the epoch loss.
struct RunningMean {
  double total = 0, count = 0;
  void add(double value, double weight) {
    total += value * weight;
    count += weight;
  }
  double result() const { return count == 0 ? 0 : total / count; }
};

// The current context when its replicas are processes (each evaluates its share); nullptr alone or when
// they are threads of this process.
ReplicaContext* own_process_replicas() {
  ReplicaContext* ctx = current_replica_context();
  return ctx != nullptr && !ctx->in_process() ? ctx : nullptr;
}

Logs metric_logs(const TrainingConfig& t, const RunningMean& loss, const std::string& prefix = "") {
  Logs logs{{prefix + "loss", loss.result()}};
  for (const auto& m : t.metrics) logs[prefix + m->name()] = m->result();
  return logs;
}

void reset_metrics(TrainingConfig& t) {
  for (const auto& m : t.metrics) m->reset_state();
}

void update_metrics(TrainingConfig& t, const Tensor& y, const Tensor& y_pred) {
  autodiff::SuspendRecording no_record;
  for (const auto& m : t.metrics) m->update_state(y, y_pred);
}

// Every replica's metric and loss states summed, so that each logs the global values.
void merge_across_replicas(ReplicaContext& ctx, TrainingConfig& t, RunningMean& loss) {
  std::vector<double> state{loss.total, loss.count};
  for (const auto& m : t.metrics) {
    std::vector<double> part = m->state();
    state.insert(state.end(), part.begin(), part.end());
  }
  std::vector<double> summed = ctx.sum(state);
  loss.total = summed[0];
  loss.count = summed[1];
  size_t at = 2;
  for (const auto& m : t.metrics) {
    size_t n = m->state().size();
    m->reset_state();
    m->merge_state(std::vector<double>(summed.begin() + static_cast<long>(at), summed.begin() + static_cast<long>(at + n)));
    at += n;
  }
}

// Rows [lo, hi) of a global batch split as numpy.array_split does: this replica's part.
std::pair<int64_t, int64_t> replica_part(int64_t lo, int64_t hi, int replicas, int id) {
  const std::vector<int64_t> bounds = array_split_bounds(hi - lo, replicas);
  return {lo + bounds[id], lo + bounds[id + 1]};
}

// The epoch's example order: a permutation drawn from the global Philox generator when shuffling.
// With several replicas the permutation comes from a seed they share, so that they agree on it.
std::vector<int64_t> epoch_order(int64_t n, bool shuffle, std::optional<uint64_t> seed = std::nullopt) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  if (!shuffle || n < 2) return order;
  std::vector<double> keys =
      (seed ? random_uniform({n}, 0, 1, kF64, kCPU, *seed) : random_uniform({n}, 0, 1, kF64)).to_vector<double>();
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return keys[a] < keys[b]; });
  return order;
}

Tensor rows(const Tensor& t, const std::vector<int64_t>& order, int64_t lo, int64_t hi, bool contiguous_range) {
  if (contiguous_range) return t.slice(0, order[lo], order[lo] + (hi - lo));
  return gather(t, from_vector<int64_t>(std::vector<int64_t>(order.begin() + lo, order.begin() + hi)).to(t.device()));
}

// One batch's forward and backward, marked on the timeline. The loss is multiplied by loss_weight before
// backward (replicas whose backward talks to the others weight it there); hooks.on_ready, when set, gets
// each gradient as soon as it is final, and hooks.destination says where to write it (the data-parallel
// averager).
struct ForwardBackward {
  Tensor y_pred, loss;
  Tensor y;  // the labels, on the predictions' device (one copy a step for the loss and the metrics)
  std::vector<Variable> vars;  // after forward: a model built by its first batch has none before
  std::vector<Tensor> grads;
};
ForwardBackward forward_backward(ModelImpl& model, const Tensor& x, const Tensor& y, double loss_weight = 1.0,
                                 const GradientTape::Hooks& hooks = {}) {
  TrainingConfig& t = config(model);
  ForwardBackward out;
  GradientTape tape;
  {
    trace::Span span("forward");
    out.y_pred = model.forward({x}, true).at(0);
    out.y = y.to(out.y_pred.device());
    out.loss = (*t.loss)(out.y, out.y_pred);
  }
  out.vars = model.trainable_variables();
  trace::Span span("backward");
  Tensor objective = loss_weight == 1.0 ? out.loss : out.loss * loss_weight;
  out.grads = tape.gradient(objective, std::vector<GradSource>(out.vars.begin(), out.vars.end()), hooks);
  return out;
}

}  // namespace

void compile(Model& model, OptimizerSpec optimizer, LossSpec loss, std::vector<MetricSpec> metrics) {
  auto t = std::make_unique<TrainingConfig>();
  t->optimizer = std::move(optimizer.optimizer);
  t->loss = std::move(loss.loss);
  std::string loss_name = loss.name.empty() ? t->loss->name() : loss.name;
  for (MetricSpec& m : metrics) {
    t->metrics.push_back(m.metric ? m.metric : std::shared_ptr<metrics::Metric>(metrics::make_metric(m.name, loss_name)));
  }
  model.impl().training = std::move(t);
}

Logs train_step(ModelImpl& model, const Tensor& x, const Tensor& y) {
  TrainingConfig& t = config(model);
  ForwardBackward step = forward_backward(model, x, y);
  {
    trace::Span span("optimizer");
    t.optimizer->apply_gradients(step.grads, step.vars);
  }
  trace::Span span("metrics");
  update_metrics(t, step.y, step.y_pred);
  return {{"loss", step.loss.item()}};
}

namespace {

// One data-parallel step. batch is this replica's rows (nullopt: none this step). Returns whether any
// replica had data (false: the epoch is over everywhere). Each gradient goes to the averager as soon as
// backward has finished it, so its all-reduce overlaps the rest of backward. `since`: when this replica's
// work towards the step began (its previous step's all-reduce ended, or the epoch began); set again when
// this step's ends.
bool replicated_step(ReplicaContext& ctx, ModelImpl& model, const std::optional<std::pair<Tensor, Tensor>>& batch,
                     double nominal_rows, RunningMean& loss, const std::optional<std::pair<Tensor, Tensor>>& no_rows,
                     std::chrono::steady_clock::time_point& since) {
  TrainingConfig& t = config(model);
  std::vector<Variable> vars = model.trainable_variables();
  const bool has_rows = batch && batch->first.dim(0) > 0;
  const double rows = has_rows ? static_cast<double>(batch->first.dim(0)) : 0.0;
  // A model whose forward and backward talk to the other replicas runs them even without rows here (on
  // an empty batch, whose gradients have weight 0), so that every replica makes the same collectives.
  // The loss is weighted by rows / nominal before backward: the gradients come out scaled by it (for such
  // a model, the cross-replica terms summed inside backward too), and backward can write them straight
  // into the averager's buckets, where a gradient still to be scaled would need a pass of its own.
  const bool synchronizes = model.synchronizes_replicas();
  std::unique_ptr<ReplicaContext::GradientAverager> averager =
      ctx.average_gradients(vars, rows, nominal_rows, /*weighted_loss=*/true);
  const std::optional<std::pair<Tensor, Tensor>>& work =
      has_rows ? batch : (synchronizes ? no_rows : std::optional<std::pair<Tensor, Tensor>>());
  if (work) {
    const double weight = rows / nominal_rows;
    // Gradients go straight into the averager's buckets where backward can write them there.
    ForwardBackward step = forward_backward(model, work->first, work->second, weight,
                                            {.on_ready = [&](size_t i, const Tensor& g) { averager->ready(i, g); },
                                             .destination = [&](size_t i) { return averager->destination(i); }});
    if (has_rows) {
      trace::Span span("metrics");
      update_metrics(t, step.y, step.y_pred);
      loss.add(step.loss.item(), rows);
    }
  }
  // Everything this replica did since its last all-reduce, waiting aside: the previous update, fetching
  // the batch, forward, backward, metrics. A balancing strategy splits rows so that these times match.
  averager->set_compute_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count());
  // Replicas sharing the variables (share_for_update) each update their part as they finish.
  if (std::optional<bool> updated = averager->finish_and_update(*t.optimizer, vars)) {
    since = std::chrono::steady_clock::now();
    return *updated;
  }
  ReplicaContext::GradientAverager::Sums summed;
  {
    trace::Span span("wait for gradients", "communication");
    summed = averager->finish_unscaled();
  }
  since = std::chrono::steady_clock::now();
  if (summed.weight == 0) return false;
  trace::Span span("optimizer");
  t.optimizer->apply_gradients(summed.grads, vars, summed.scale);  // the average, divided inside the update
  return true;
}

// Forward and backward of one global batch on replicas on threads (MirroredStrategy): the batch split
// as numpy.array_split does, each part's forward and backward on its replica's thread (own tape, own
// random generator, its replica context current for cross_replica_sum). Returns, per replica and
// variable, (rows / nominal_rows) x its mean gradient (no gradients for a replica without rows), and the
// total rows / nominal_rows (0: no rows); updates the metrics and the loss on the whole batch.
std::pair<std::vector<std::vector<Tensor>>, double> replicas_forward_backward(ReplicaContext& ctx, ModelImpl& model,
                                                                              const std::pair<Tensor, Tensor>& batch,
                                                                              double nominal_rows, RunningMean& loss) {
  TrainingConfig& t = config(model);
  const std::vector<Variable> vars = model.trainable_variables();
  const int n = ctx.num_replicas();
  const int64_t total = batch.first.dim(0);
  const std::vector<int64_t> begin = array_split_bounds(total, n);
  const bool synchronizes = model.synchronizes_replicas();
  // Each replica's random numbers come from its own generator, seeded from one draw of the global one:
  // the same masks every run, whatever the threads' timing.
  const RandomStream step = take_random_stream(std::nullopt);
  std::vector<std::vector<Tensor>> grads(n);
  std::vector<Tensor> preds(n);
  std::vector<double> losses(n, 0.0);
  {
    trace::Span span("replicas forward and backward");
    ctx.run_replicas([&](int r) {
      const int64_t rows = begin[r + 1] - begin[r];
      if (rows == 0 && !synchronizes) return;
      Generator generator(replica_seed(step, r));
      GeneratorScope scope(generator);
      // Weighted before backward, so that cross-replica terms summed inside backward are weighted too.
      ForwardBackward step = forward_backward(model, batch.first.slice(0, begin[r], begin[r + 1]),
                                              batch.second.slice(0, begin[r], begin[r + 1]),
                                              static_cast<double>(rows) / nominal_rows);
      grads[r] = std::move(step.grads);
      if (rows > 0) {
        preds[r] = step.y_pred;
        losses[r] = step.loss.item();
      }
    });
  }
  // Replica 0 keeps statistics such as BatchNormalization's moving averages in its (the primary) copy:
  // the other replicas' copies follow it before their next step (replicas over devices).
  for (const Variable& v : model.non_trainable_variables()) v.refresh_mirrors();
  if (total == 0) return {{}, 0.0};
  // Replicas without rows add nothing (they ran only to meet the others in cross-replica sums).
  for (int r = 0; r < n; ++r) {
    if (begin[r + 1] == begin[r]) grads[r].clear();
  }
  std::vector<Tensor> parts;
  double loss_sum = 0;
  for (int r = 0; r < n; ++r) {
    if (!preds[r].defined()) continue;
    parts.push_back(parts.empty() ? preds[r] : preds[r].to(parts[0].device()));
    loss_sum += losses[r] * static_cast<double>(begin[r + 1] - begin[r]);
  }
  update_metrics(t, batch.second, parts.size() == 1 ? parts[0] : concat(parts, 0));
  loss.add(loss_sum / static_cast<double>(total), static_cast<double>(total));
  return {std::move(grads), static_cast<double>(total) / nominal_rows};
}

// One step of replicas on threads: their gradients averaged weighted by rows, one optimizer update of
// the shared variables: split among the replica threads where it can be (`threaded`, made on the first
// step and kept while it matches), else on this thread.
void mirrored_step(ReplicaContext& ctx, ModelImpl& model, const std::pair<Tensor, Tensor>& batch, double nominal_rows,
                   RunningMean& loss, std::unique_ptr<ThreadedUpdate>& threaded) {
  auto [grads, weight] = replicas_forward_backward(ctx, model, batch, nominal_rows, loss);
  if (weight == 0) return;
  const std::vector<Variable> vars = model.trainable_variables();
  optimizers::Optimizer& optimizer = *config(model).optimizer;
  if (!threaded || !threaded->matches(vars, optimizer)) threaded = ThreadedUpdate::make(ctx, vars, optimizer);
  // The average, divided inside the update (no pass of its own over the gradients).
  if (threaded && threaded->apply(ctx, grads, 1.0 / weight)) return;
  // Replicas over devices (MirroredStrategy's copies): summed on the variables' own device.
  std::vector<Tensor> summed = ctx.sum_replica_gradients(grads, vars);
  trace::Span span("optimizer");
  optimizer.apply_gradients(summed, vars, 1.0 / weight);
}

struct Accumulation {
  std::vector<Tensor> sums;  // per variable; undefined while no batch gave it a gradient
  double rows = 0;
  int batches = 0;  // batches stepped in this group (data-parallel: including ones without rows here)

  // The same for a global batch of replicas on threads (MirroredStrategy), run concurrently.
  void add_on_replicas(ReplicaContext& ctx, ModelImpl& model, const std::pair<Tensor, Tensor>& batch, double nominal_rows,
                       RunningMean& loss) {
    // Losses weighted by rows / nominal before backward (kept near 1, as in a plain step); times nominal
    // after: each replica's mean gradient times its rows, as add() sums them.
    auto [grads, weight] = replicas_forward_backward(ctx, model, batch, nominal_rows, loss);
    if (weight == 0) return;
    const std::vector<Tensor> summed = ctx.sum_replica_gradients(grads, model.trainable_variables());
    sums.resize(summed.size());
    for (size_t i = 0; i < summed.size(); ++i) {
      if (!summed[i].defined()) continue;
      Tensor part = summed[i] * nominal_rows;
      sums[i] = sums[i].defined() ? sums[i] + part : part;
    }
    rows += weight * nominal_rows;
  }
  // Forward and backward on a batch of this replica; adds its gradients; updates loss and metrics. An
  // empty batch (a synchronizing model's replica without rows) only takes part in the collectives.
  void add(ModelImpl& model, const Tensor& x, const Tensor& y, RunningMean& loss) {
    ForwardBackward step = forward_backward(model, x, y);
    const std::vector<Tensor>& grads = step.grads;
    const double n = static_cast<double>(x.dim(0));
    if (n == 0) return;
    sums.resize(grads.size());
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!grads[i].defined()) continue;
      sums[i] = sums[i].defined() ? sums[i] + grads[i] * n : grads[i] * n;
    }
    rows += n;
    update_metrics(config(model), step.y, step.y_pred);
    loss.add(step.loss.item(), n);
  }
  // The group's mean gradients (undefined where no batch had one).
  std::vector<Tensor> mean(size_t num_vars) const {
    std::vector<Tensor> out(num_vars);
    for (size_t i = 0; i < sums.size() && i < num_vars; ++i) {
      if (sums[i].defined()) out[i] = sums[i] / rows;
    }
    return out;
  }
  void clear() { *this = Accumulation(); }
};

// Applies an accumulated group alone.
void apply_accumulated(ModelImpl& model, Accumulation& acc) {
  if (acc.rows > 0) {
    std::vector<Variable> vars = model.trainable_variables();
    trace::Span span("optimizer");
    config(model).optimizer->apply_gradients(acc.mean(vars.size()), vars);
  }
  acc.clear();
}

// The data-parallel form: one all-reduce per group, each replica weighted by its rows in the group.
// Returns whether any replica had rows in it (false: the epoch is over everywhere).
bool apply_accumulated(ReplicaContext& ctx, ModelImpl& model, Accumulation& acc, double nominal_rows) {
  std::vector<Variable> vars = model.trainable_variables();
  std::unique_ptr<ReplicaContext::GradientAverager> averager = ctx.average_gradients(vars, acc.rows, nominal_rows);
  std::vector<Tensor> mine = acc.mean(vars.size());
  for (size_t i = vars.size(); i-- > 0;) averager->ready(i, mine[i]);
  std::pair<std::vector<Tensor>, double> averaged;
  {
    trace::Span span("wait for gradients", "communication");
    averaged = averager->finish();
  }
  acc.clear();
  if (averaged.second == 0) return false;
  trace::Span span("optimizer");
  config(model).optimizer->apply_gradients(averaged.first, vars);
  return true;
}

// Builds the model on a sample batch and gives every replica replica 0's variables.
void build_and_sync(ReplicaContext& ctx, ModelImpl& model, const Tensor& sample_x) {
  {
    autodiff::SuspendRecording no_record;
    model.forward({sample_x}, false);
  }
  ctx.broadcast_variables(model.variables());
}

}  // namespace

Logs evaluate(Model& model, const Tensor& x, const Tensor& y, const EvaluateOptions& options) {
  check_pair("evaluate", x, y);
  if (options.batch_size <= 0) throw ValueError(str_cat("evaluate: batch_size must be positive, got ", options.batch_size));
  ModelImpl& m = model.impl();
  TrainingConfig& t = config(m);
  reset_metrics(t);
  for (const auto& cb : options.callbacks) cb->set_model(&m);
  for (const auto& cb : options.callbacks) cb->on_test_begin({});
  autodiff::SuspendRecording no_record;
  RunningMean loss;
  // Replicas on threads share the model: the calling thread evaluates everything itself.
  ReplicaContext* ctx = own_process_replicas();
  // Each replica evaluates its part of the examples; the states are merged at the end.
  auto [first, last] = ctx ? replica_part(0, x.dim(0), ctx->num_replicas(), ctx->replica_id())
                           : std::pair<int64_t, int64_t>{0, x.dim(0)};
  for (int64_t lo = first, batch = 0; lo < last; lo += options.batch_size, ++batch) {
    int64_t hi = std::min(last, lo + options.batch_size);
    Tensor xb = x.slice(0, lo, hi), yb = y.slice(0, lo, hi);
    Tensor y_pred = m.forward({xb}, false).at(0);
    yb = yb.to(y_pred.device());
    loss.add((*t.loss)(yb, y_pred).item(), static_cast<double>(hi - lo));
    update_metrics(t, yb, y_pred);
    for (const auto& cb : options.callbacks) cb->on_test_batch_end(batch, metric_logs(t, loss));
  }
  if (ctx) merge_across_replicas(*ctx, t, loss);
  Logs logs = metric_logs(t, loss);
  for (const auto& cb : options.callbacks) cb->on_test_end(logs);
  return logs;
}

namespace {

// Yields the batches of one epoch; nullopt ends it.
using NextBatch = std::function<std::optional<std::pair<Tensor, Tensor>>()>;

// The epoch loop shared by fit over tensors and over datasets. steps < 0: unknown until the data ends.
// sample: one full per-replica batch (the same on every replica), to build the model before
// training when distributed; its rows are the nominal weight of a step.
// epoch_batches(epoch, skip) starts an epoch after its first `skip` batches (a mid-epoch resume).
History fit_loop(Model& model, const std::function<NextBatch(int epoch, int64_t skip)>& epoch_batches, int64_t steps,
                 const FitOptions& options, const std::function<std::pair<Tensor, Tensor>()>& sample) {
  if (options.epochs < 0) throw ValueError(str_cat("fit: epochs must not be negative, got ", options.epochs));
  const int accumulate = options.gradient_accumulation_steps;
  if (accumulate < 1) {
    throw ValueError(str_cat("fit: gradient_accumulation_steps must be at least 1, got ", accumulate));
  }
  ModelImpl& m = model.impl();
  TrainingConfig& t = config(m);
  ReplicaContext* ctx = current_replica_context();
  double nominal_rows = 1;
  std::optional<std::pair<Tensor, Tensor>> no_rows;
  if (ctx) {
    std::pair<Tensor, Tensor> first = sample();
    nominal_rows = static_cast<double>(std::max<int64_t>(1, first.first.dim(0)));
    build_and_sync(*ctx, m, first.first);
    // No rows of its own in a step, a replica still runs a synchronizing model's collectives on these.
    no_rows = std::pair{first.first.slice(0, 0, 0), first.second.slice(0, 0, 0)};
  } else if (m.variables().empty()) {
    // Build before the callbacks start, so that they see the variables (BackupAndRestore restores into
    // them). The inference-mode forward draws nothing from the RNG beyond the initializers' own draws.
    autodiff::SuspendRecording no_record;
    m.forward({sample().first}, false);
  }
  std::vector<CallbackPtr> callbacks = options.callbacks;
  bool shows_progress = options.verbose > 0 && (!ctx || ctx->replica_id() == 0);
  if (shows_progress) callbacks.insert(callbacks.begin(), ProgbarLogger(options.verbose));
  for (const auto& cb : callbacks) {
    cb->set_model(&m);
    cb->set_params(options.epochs, steps);
  }
  t.stop_training = false;
  t.resume_epoch = -1;
  t.resume_step = 0;
  t.resume_data_state.clear();
  History history;
  for (const auto& cb : callbacks) cb->on_train_begin({});
  // Replicas in processes stepping one batch at a time may share one copy of the variables for the loop
  // (after on_train_begin, which may restore them), each updating its part; given back before on_train_end.
  std::shared_ptr<void> shared;
  if (ctx && !ctx->in_process() && accumulate == 1) shared = ctx->share_for_update(m.trainable_variables(), *t.optimizer);
  std::unique_ptr<ThreadedUpdate> threaded;  // replicas on threads: their update, split among them
  int first_epoch = std::max(options.initial_epoch, t.resume_epoch);
  for (int epoch = first_epoch; epoch < options.epochs && !t.stop_training; ++epoch) {
    for (const auto& cb : callbacks) cb->on_epoch_begin(epoch, {});
    reset_metrics(t);
    RunningMean loss;
    const int64_t skip = epoch == t.resume_epoch ? t.resume_step : 0;
    NextBatch next = epoch_batches(epoch, skip);
    int64_t step = skip;
    auto since = std::chrono::steady_clock::now();  // replicated_step's: this replica's work since its last sync
    Accumulation acc;
    while (true) {
      std::optional<std::pair<Tensor, Tensor>> batch;
      {
        trace::Span span("next batch");
        batch = next();
      }
      if (batch) check_pair("fit", batch->first, batch->second);
      const bool threads = ctx && ctx->in_process();
      if ((!ctx || threads) && !batch) {
        if (acc.batches > 0) apply_accumulated(m, acc);  // a short last group
        break;
      }
      const bool has_rows = batch && batch->first.dim(0) > 0;
      // Accumulating data-parallel replicas step in lockstep through groups of k batches, and their
      // callbacks must too (a BackupAndRestore save is collective): a batch a replica does not have (the
      // data ended here first) still counts as its step. Alone, a missing batch is no step.
      const bool is_step = accumulate == 1 || has_rows || (ctx && !threads);
      if (is_step) {
        for (const auto& cb : callbacks) cb->on_train_batch_begin(step, {});
      }
      if (accumulate > 1) {
        if (has_rows && threads) {
          acc.add_on_replicas(*ctx, m, *batch, nominal_rows, loss);
        } else if (has_rows) {
          acc.add(m, batch->first, batch->second, loss);
        } else if (ctx && no_rows && m.synchronizes_replicas()) {
          acc.add(m, no_rows->first, no_rows->second, loss);
        }
        if (++acc.batches == accumulate) {
          if (ctx && !threads) {
            if (!apply_accumulated(*ctx, m, acc, nominal_rows * accumulate)) break;
          } else {
            apply_accumulated(m, acc);
          }
        }
      } else if (threads) {
        mirrored_step(*ctx, m, *batch, nominal_rows, loss, threaded);
      } else if (ctx) {
        // Every replica steps until none has data left: the last steps may be short or empty here.
        if (!replicated_step(*ctx, m, batch, nominal_rows, loss, no_rows, since)) break;
      } else {
        loss.add(train_step(m, batch->first, batch->second).at("loss"), static_cast<double>(batch->first.dim(0)));
      }
      if (!is_step) continue;
      trace::Span span("callbacks");
      t.mid_accumulation_group = acc.batches > 0;
      Logs logs = metric_logs(t, loss);
      for (const auto& cb : callbacks) cb->on_train_batch_end(step, logs);
      ++step;
    }
    t.mid_accumulation_group = false;  // the loop applied the last group, short or not
    if (ctx) {
      merge_across_replicas(*ctx, t, loss);
      average_mean_aggregated(*ctx, m.variables());  // e.g. moving statistics, before validation sees them
    }
    Logs logs = metric_logs(t, loss);
    if (options.validation_data) {
      Logs val = evaluate(model, options.validation_data->x, options.validation_data->y,
                          {.batch_size = options.batch_size});
      for (const auto& [k, v] : val) logs["val_" + k] = v;
    }
    if (options.validation_dataset) {
      for (const auto& [k, v] : evaluate(model, *options.validation_dataset)) logs["val_" + k] = v;
    }
    for (const auto& cb : callbacks) cb->on_epoch_end(epoch, logs);
    history.epoch.push_back(epoch);
    for (const auto& [k, v] : logs) history.history[k].push_back(v);
  }
  shared.reset();
  for (const auto& cb : callbacks) cb->on_train_end({});
  return history;
}

std::pair<Tensor, Tensor> as_pair(const std::string& where, const Element& e) {
  if (e.size() != 2) {
    throw ValueError(str_cat(where, ": dataset elements must be (x, y) pairs, got ", e.size(), " components"));
  }
  return {e[0], e[1]};
}

}  // namespace

History fit(Model& model, const Tensor& x, const Tensor& y, const FitOptions& options) {
  check_pair("fit", x, y);
  if (options.batch_size <= 0) throw ValueError(str_cat("fit: batch_size must be positive, got ", options.batch_size));
  int64_t n = x.dim(0), bs = options.batch_size;
  // Distributed: batch_size rows per replica, so a global batch of batch_size x replicas.
  ReplicaContext* ctx = current_replica_context();
  int replicas = ctx ? ctx->num_replicas() : 1;
  // Replicas on threads: this thread takes the whole global batch and fit_loop splits it.
  ReplicaContext* processes = own_process_replicas();
  const int id = processes ? processes->replica_id() : 0;
  TrainingConfig& t = config(model.impl());
  t.shuffle_seed.reset();
  if (ctx && options.shuffle) t.shuffle_seed = ctx->shared_seed();
  int64_t global = bs * replicas;
  int64_t steps = (n + global - 1) / global;
  const int64_t parts = processes ? processes->num_replicas() : 1;
  return fit_loop(
      model,
      [&](int epoch, int64_t skip) -> NextBatch {
        // Read per epoch: a resume (on_train_begin) may have put back the saved run's seed.
        std::optional<uint64_t> seed = t.shuffle_seed;
        auto order = std::make_shared<std::vector<int64_t>>(
            epoch_order(n, options.shuffle, seed ? std::optional<uint64_t>(*seed + epoch) : std::nullopt));
        auto lo = std::make_shared<int64_t>(std::min(n, skip * global));
        // Equal parts per process can be worked out ahead of the step (a split by speed cannot).
        const bool even_split = processes && !processes->splits_rows_by_speed();
        NextBatch batches = [=, &x, &y]() -> std::optional<std::pair<Tensor, Tensor>> {
          if (*lo >= n) return std::nullopt;
          int64_t hi = std::min(n, *lo + global);
          int64_t begin = *lo, end = hi;
          if (processes) {  // the strategy's split (equal parts, or by speed when it balances the load)
            std::vector<int64_t> bounds =
                even_split ? array_split_bounds(hi - *lo, parts) : processes->split_rows(hi - *lo);
            begin = *lo + bounds.at(id);
            end = *lo + bounds.at(id + 1);
          }
          *lo = hi;
          if (begin == end) return std::nullopt;  // this replica sits out the short last step
          return std::pair<Tensor, Tensor>{rows(x, *order, begin, end, !options.shuffle),
                                           rows(y, *order, begin, end, !options.shuffle)};
        };
        // One batch ahead on a background thread while the step runs. Not when ranks split each global
        // batch by their speeds (known only once the step before has run), nor for tensors on a device,
        // whose ops belong on the training thread.
        if ((processes && !even_split) || !x.device().is_cpu() || !y.device().is_cpu()) return batches;
        auto prefetcher = std::make_shared<BatchPrefetcher>(std::move(batches));
        return [prefetcher] { return (*prefetcher)(); };
      },
      steps, options, [&] { return std::pair{x.slice(0, 0, std::min(n, bs)), y.slice(0, 0, std::min(n, bs))}; });
}

History fit(Model& model, const Dataset& dataset, const FitOptions& options) {
  int64_t card = dataset.cardinality();
  if (card == Dataset::kInfinite) {
    throw ValueError("fit: the dataset is infinite (repeat() without a count); take() a number of batches per epoch");
  }
  // Distributed: each replica reads its share (by file, or every num_replicas-th batch: the dataset's
  // batches are per replica).
  ReplicaContext* ctx = current_replica_context();
  ReplicaContext* processes = own_process_replicas();
  // Replicas on threads: one batch per replica each step, all read here (fit_loop splits them again).
  const int64_t per_step = ctx && !processes ? ctx->num_replicas() : 1;
  Dataset mine = processes ? auto_shard(dataset, ctx->num_replicas(), ctx->replica_id(), options.shard_policy) : dataset;
  if (ctx && card >= 0 && options.shard_policy != AutoShardPolicy::kOff) {
    card = (card + ctx->num_replicas() - 1) / ctx->num_replicas();  // the most any replica has
  }
  return fit_loop(
      model,
      [&](int, int64_t skip) -> NextBatch {
        TrainingConfig& t = config(model.impl());
        IteratorState saved = IteratorState::from_bytes(std::exchange(t.resume_data_state, ""));
        std::shared_ptr<Iterator> it;
        if (skip > 0 && !saved.empty()) {
          it = std::make_shared<Iterator>(mine.make_iterator(saved));
        } else {
          // A position saved at an epoch's end still matters: restoring it sets the pipeline's pass
          // count, so this epoch reshuffles as it did in the saved run.
          if (!saved.empty()) mine.make_iterator(saved);
          it = std::make_shared<Iterator>(mine.make_iterator());
          for (int64_t i = 0; i < skip && it->next(); ++i) {
          }
        }
        t.data_position = [weak = std::weak_ptr<Iterator>(it)]() -> std::string {
          std::shared_ptr<Iterator> live = weak.lock();
          try {
            return live ? live->save().bytes() : "";
          } catch (const StateError&) {
            return "";  // from_generator: the position is opaque
          }
        };
        return [it, per_step]() -> std::optional<std::pair<Tensor, Tensor>> {
          std::vector<Tensor> xs, ys;
          for (int64_t k = 0; k < per_step; ++k) {
            std::optional<Element> e = it->next();
            if (!e) break;
            auto [xb, yb] = as_pair("fit", *e);
            xs.push_back(xb);
            ys.push_back(yb);
          }
          if (xs.empty()) return std::nullopt;
          if (xs.size() == 1) return std::pair{xs[0], ys[0]};
          return std::pair{concat(xs, 0), concat(ys, 0)};
        };
      },
      card >= 0 ? card : -1, options, [&] {
        std::optional<Element> first = dataset.take(1).make_iterator().next();
        if (!first) throw ValueError("fit: the dataset is empty");
        return as_pair("fit", *first);
      });
}

Logs evaluate(Model& model, const Dataset& dataset, const EvaluateOptions& options) {
  ModelImpl& m = model.impl();
  TrainingConfig& t = config(m);
  reset_metrics(t);
  for (const auto& cb : options.callbacks) cb->set_model(&m);
  for (const auto& cb : options.callbacks) cb->on_test_begin({});
  autodiff::SuspendRecording no_record;
  RunningMean loss;
  int64_t batch = 0;
  // Replicas on threads share the model: the calling thread evaluates everything itself.
  ReplicaContext* ctx = own_process_replicas();
  Dataset mine = ctx ? auto_shard(dataset, ctx->num_replicas(), ctx->replica_id(), options.shard_policy) : dataset;
  for (const Element& e : mine) {
    auto [xb, yb] = as_pair("evaluate", e);
    check_pair("evaluate", xb, yb);
    Tensor y_pred = m.forward({xb}, false).at(0);
    yb = yb.to(y_pred.device());
    loss.add((*t.loss)(yb, y_pred).item(), static_cast<double>(xb.dim(0)));
    update_metrics(t, yb, y_pred);
    for (const auto& cb : options.callbacks) cb->on_test_batch_end(batch++, metric_logs(t, loss));
  }
  if (ctx) merge_across_replicas(*ctx, t, loss);
  Logs logs = metric_logs(t, loss);
  for (const auto& cb : options.callbacks) cb->on_test_end(logs);
  return logs;
}

Tensor predict(Model& model, const Tensor& x, int64_t batch_size) {
  if (batch_size <= 0) throw ValueError(str_cat("predict: batch_size must be positive, got ", batch_size));
  autodiff::SuspendRecording no_record;
  std::vector<Tensor> parts;
  for (int64_t lo = 0; lo < x.dim(0); lo += batch_size) {
    parts.push_back(model.impl().forward({x.slice(0, lo, std::min(x.dim(0), lo + batch_size))}, false).at(0));
  }
  if (parts.empty()) throw ValueError("predict: x has no examples");
  return parts.size() == 1 ? parts[0] : concat(parts, 0);
}

}  // namespace gradflow

namespace gradflow {

void Model::compile(OptimizerSpec optimizer, LossSpec loss, std::vector<MetricSpec> metrics) {
  gradflow::compile(*this, std::move(optimizer), std::move(loss), std::move(metrics));
}
History Model::fit(const Tensor& x, const Tensor& y, const FitOptions& options) {
  return gradflow::fit(*this, x, y, options);
}
History Model::fit(const Dataset& dataset, const FitOptions& options) { return gradflow::fit(*this, dataset, options); }
Logs Model::evaluate(const Dataset& dataset, const EvaluateOptions& options) {
  return gradflow::evaluate(*this, dataset, options);
}
Logs Model::evaluate(const Tensor& x, const Tensor& y, const EvaluateOptions& options) {
  return gradflow::evaluate(*this, x, y, options);
}
Tensor Model::predict(const Tensor& x, int64_t batch_size) { return gradflow::predict(*this, x, batch_size); }

}  // namespace gradflow
