// ReplicaContext: what fit() and evaluate() ask of a distribution strategy when several replicas train
// one model in lockstep (strategies/ implements it over a communicator; core/ only calls it, so it
// never depends on communication code).
//
//   ReplicaContextScope scope(&context);   // what Strategy::scope() does
//   model.fit(x, y, {.epochs = 5});         // now data-parallel: shards, averages gradients, syncs
//
// With a context, fit() builds the model and copies replica 0's variables to every replica, gives each
// replica its part of every global batch (per-replica batch_size rows; the order of a shuffled epoch
// comes from a seed shared by all replicas), averages gradients weighted by each replica's rows (so a
// short last batch, or a replica with no rows left, is handled exactly and identically everywhere), and
// merges the metrics' states at the end of each epoch, so every replica logs the global values.
// Only replica 0 shows a progress bar.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/autodiff/variable.h"
#include "core/tensor/tensor.h"

namespace gradflow {

namespace optimizers {
class Optimizer;
}

class ReplicaContext {
 public:
  virtual ~ReplicaContext() = default;

  virtual int num_replicas() const = 0;
  virtual int replica_id() const = 0;
  // The strategy's class name, as checkpoints record it ("MirroredStrategy").
  virtual std::string strategy_name() const = 0;

  // Replicas on threads of this process sharing the model's variables (MirroredStrategy): fit then
  // takes each step's global batch on the calling thread and hands every replica its part through
  // run_replicas; evaluate runs on the calling thread, which sees all the data.
  virtual bool in_process() const { return false; }
  // This is one replica's thread of such a strategy (inside run_replicas), not the calling thread.
  virtual bool on_replica_thread() const { return false; }
  // Runs fn(replica) for every replica, each on its own thread with that replica's context current (so
  // its cross_replica_sum meets the others'), and returns when all have; rethrows the first error.
  virtual void run_replicas(const std::function<void(int replica)>& fn);
  // After run_replicas in fit: per variable i, the sum over replicas r of grads[r][i] (each on replica
  // r's device; undefined, or grads[r] empty, where replica r has none), on vars[i]'s device; undefined
  // where no replica has one. The default copies each gradient there and adds in replica order (tf's
  // ReductionToOneDevice); MirroredStrategy over GPUs sums with NCCL instead.
  virtual std::vector<Tensor> sum_replica_gradients(const std::vector<std::vector<Tensor>>& grads,
                                                    const std::vector<Variable>& vars);

  // tf.distribute's merge_call, for replicas on threads sharing the variables (MirroredStrategy's, inside
  // strategy.run): an update of shared state that every replica asks for (apply_gradients) must happen
  // once. Every replica calls it, in the same order; once all have, fn runs once, on one of their threads,
  // with every replica's `mine` by replica id, and all return after it (its error thrown on every one).
  // Where a process is one replica, or on MirroredStrategy's calling thread: fn({mine}) at once.
  virtual void merge_call(const void* mine, const std::function<void(const std::vector<const void*>& all)>& fn) {
    fn({mine});
  }

  // Every replica's vars take replica 0's values (all replicas pass the same list, in the same order).
  virtual void broadcast_variables(const std::vector<Variable>& vars) = 0;

  // Averages one step's gradients of `vars` across replicas while backward produces them:
  // sum_r(weight_r * grads_r) / sum_r(weight_r), and sum_r(weight_r). A replica with nothing to
  // contribute passes weight 0 (and may skip ready()). `nominal` is the usual weight, the same on every
  // replica (fit passes the per-replica batch): a replica whose weight equals it needs no scaling pass.
  class GradientAverager {
   public:
    virtual ~GradientAverager() = default;
    // vars[i]'s gradient on this replica is final (undefined: it has none). At most once per variable,
    // in any order (backward's is best: communication then starts while backward goes on).
    virtual void ready(size_t i, const Tensor& grad) = 0;
    // Where backward may write vars[i]'s gradient itself (GradientTape::Hooks::destination), sparing
    // ready() a copy; undefined: anywhere. Valid until ready(i).
    virtual Tensor destination(size_t i) { return Tensor(); }
    // Waits for the communication; returns the averaged gradients and the total weight. A variable no
    // replica had a gradient for gets an undefined one (the optimizer skips it, on every replica alike);
    // when the total weight is 0 the gradients are empty. Variables never made ready count as undefined.
    virtual std::pair<std::vector<Tensor>, double> finish() = 0;
    // How long this replica worked towards this step, given before finish(): since its previous step's
    // all-reduce ended (the update, fetching the batch, forward, backward), its waits aside. A strategy
    // that balances the load learns the replicas' speeds from it (DataParallelOptions::balance_load).
    virtual void set_compute_seconds(double seconds) {}
    // finish(), leaving the division to the caller: the replicas' weighted sums (which may share memory
    // that the next average_gradients reuses: apply them at once, keep nothing), the total weight, and
    // the factor to multiply the sums by. An optimizer folds the factor into its update
    // (apply_gradients' scale), sparing a pass over every gradient.
    struct Sums {
      std::vector<Tensor> grads;
      double weight = 0;
      double scale = 1;
    };
    virtual Sums finish_unscaled() {
      auto [grads, weight] = finish();
      return {std::move(grads), weight, 1.0};
    }
    // Instead of finish(): finishes the step and updates `vars` with `optimizer` itself, where the
    // replicas share the variables and each updates a part of them (ReplicaContext::share_for_update):
    // the update apply_gradients would make with finish_unscaled()'s sums. nullopt where this averager
    // does not (the caller then finishes and applies as usual); otherwise whether any replica had rows
    // (false: nothing was applied, the epoch is over everywhere).
    virtual std::optional<bool> finish_and_update(optimizers::Optimizer& optimizer, const std::vector<Variable>& vars) {
      return std::nullopt;
    }
  };
  // weighted_loss: the gradients given to ready() already carry weight / nominal, because the loss was
  // scaled by it before backward. A model whose backward talks to the other replicas (cross_replica_sum)
  // needs that: its cross-replica gradient terms are summed inside backward, before any averaging.
  virtual std::unique_ptr<GradientAverager> average_gradients(const std::vector<Variable>& vars, double weight,
                                                              double nominal, bool weighted_loss = false) = 0;

  // For the length of fit's data-parallel loop: the strategy may move `vars` and their slots in
  // `optimizer` into one copy that the replicas of a host share, each replica then updating its part of
  // every variable in GradientAverager::finish_and_update (ZeRO stage 1's split of the update, with one
  // copy of the state instead of one per replica), for as long as the returned object lives; destroying
  // it gives every replica its own copy back. nullptr: nothing was moved (the strategy does not split, or
  // cannot here). Collective: every replica calls it with the same variables.
  virtual std::shared_ptr<void> share_for_update(const std::vector<Variable>& vars, optimizers::Optimizer& optimizer) {
    return nullptr;
  }

  // How fit() splits a step's `rows` rows among the replicas: bounds b_0 = 0 <= b_1 <= ... <= b_n = rows,
  // replica r taking [b_r, b_r+1). Equal parts (numpy.array_split) unless the strategy balances the
  // load by speed; called by every replica at every step, with the same answer on each. An override
  // that may differ from equal parts must also make splits_rows_by_speed() say so: otherwise fit works
  // out equal parts itself, ahead of the step, and never calls it.
  virtual std::vector<int64_t> split_rows(int64_t rows);
  // Whether split_rows may differ from equal parts (it balances by measured speed): then it must run at
  // its step, and fit does not prepare the next step's rows ahead. Read at each epoch's start.
  virtual bool splits_rows_by_speed() const { return false; }

  // Elementwise sums across replicas.
  virtual std::vector<double> sum(const std::vector<double>& values) = 0;
  // The elementwise sum of t over the replicas (every replica passes the same shape and dtype).
  virtual Tensor all_reduce_sum(const Tensor& t) = 0;

  // A seed drawn by replica 0 (from its global generator, so set_seed() makes runs repeat), the same on
  // every replica.
  virtual uint64_t shared_seed() = 0;

  // Sums for work that runs on another thread beside training (an async sharded checkpoint's commit),
  // outside the order of training's collectives. Opening one is collective (every replica, in the order
  // of its other collectives); then every replica makes the same sequence of sum() calls on it, from one
  // thread of its choice, while training goes on. sum() throws Error when a replica does not come in time.
  class BackgroundSums {
   public:
    virtual ~BackgroundSums() = default;
    virtual std::vector<double> sum(const std::vector<double>& values) = 0;
  };
  // nullptr: this context has none (such work then runs on the training thread).
  virtual std::unique_ptr<BackgroundSums> background_sums() { return nullptr; }
};

// Bounds b_0 = 0 <= b_1 <= ... <= b_n = rows of `rows` rows in n parts as numpy.array_split makes them
// (the first rows % n parts one row longer): how replicas share a batch unless a strategy balances it.
std::vector<int64_t> array_split_bounds(int64_t rows, int64_t n);

// The context of this thread (nullptr: training is not distributed).
ReplicaContext* current_replica_context();

// x summed over the replicas of the current context (x itself without one), as a differentiable op: its
// gradient is the replicas' sum of the output's gradients, which makes a replica's backward account for
// how its rows moved every replica's loss (SyncBatchNormalization's statistics). Collective: every
// replica must call it, in the same order.
Tensor cross_replica_sum(const Tensor& x);

// The replicas' mean of every VariableAggregation::kMean variable of `vars` (one sum of them all, in
// f64), in the variable's dtype and device, when the replicas are separate processes; nothing for
// replicas on threads, which share one copy. Collective for separate processes: every replica calls it
// with the same model's variables.
std::vector<std::pair<Variable, Tensor>> replicas_mean_of_mean_aggregated(ReplicaContext& ctx,
                                                                          const std::vector<Variable>& vars);
// The same, assigned to the variables (fit, at each epoch's end).
void average_mean_aggregated(ReplicaContext& ctx, const std::vector<Variable>& vars);

// Makes context current on this thread for the scope's lifetime.
class ReplicaContextScope {
 public:
  // With a device, also a DeviceScope: models made in the scope live there (a strategy's first replica).
  explicit ReplicaContextScope(ReplicaContext* context, std::optional<Device> device = std::nullopt);
  ~ReplicaContextScope();
  ReplicaContextScope(const ReplicaContextScope&) = delete;
  ReplicaContextScope& operator=(const ReplicaContextScope&) = delete;

 private:
  ReplicaContext* previous_;
  std::optional<DeviceScope> device_;
};

}  // namespace gradflow
