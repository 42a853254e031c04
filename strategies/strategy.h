// Distribution strategies, as tf.distribute has them: the same model code trains on one device or on
// many, by opening a strategy's scope (docs/strategies.md).
//
//   auto strategy = DataParallelStrategy::from_environment();   // gfrun, mpirun, srun, TF_CONFIG
//   auto scope = strategy->scope();                              // fit/evaluate below are data-parallel
//   Sequential model{{...}};
//   model.compile("adam", "sparse_categorical_crossentropy", {"accuracy"});
//   model.fit(x, y, {.epochs = 5, .batch_size = 32});            // 32 per replica
//
// Under a scope, fit() and evaluate() shard the data, keep the replicas' variables identical (replica 0's
// initial values, averaged gradients) and report global metrics (core/nn/replica_context.h). Custom
// GradientTape loops call strategy.gradient(tape, loss, vars) where they called tape.gradient() (or
// reduce_gradients() between tape.gradient() and apply_gradients()).
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "core/gradflow.h"
#include "core/nn/replica_context.h"

namespace gradflow::strategies {

// How reduce() combines the replicas' values.
enum class Reduction { kSum, kMean };

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual int num_replicas_in_sync() const = 0;
  virtual int replica_id() const = 0;

  // While it lives, fit/evaluate on this thread run under this strategy.
  [[nodiscard]] std::unique_ptr<ReplicaContextScope> scope();

  // For custom loops: this replica's part of ds, by file or by element as `policy` says
  // (core/data/sharding.h; fit() does this itself).
  Dataset distribute_dataset(const Dataset& ds, AutoShardPolicy policy = AutoShardPolicy::kAuto) const;

  // For custom loops: the gradients of target with respect to vars, averaged over the replicas; each
  // bucket's all-reduce starts while backward still runs. A variable no replica has a gradient for gets
  // an undefined one (apply_gradients skips it). Replaces tape.gradient() + reduce_gradients().
  virtual std::vector<Tensor> gradient(GradientTape& tape, const Tensor& target, const std::vector<Variable>& vars) {
    return tape.gradient(target, std::vector<GradSource>(vars.begin(), vars.end()));
  }

  // For custom loops: the gradients averaged over the replicas (each replica passes its own, same shapes).
  virtual std::vector<Tensor> reduce_gradients(const std::vector<Tensor>& grads) = 0;

  // Every replica's vars take replica 0's values (after building the model in a custom loop).
  virtual void broadcast_variables(const std::vector<Variable>& vars) = 0;

  // tf.distribute's strategy.run(fn, args): runs one replica's step. Each process here is one replica
  // (DefaultStrategy, MultiWorkerMirroredStrategy), so this is that process's call; its value is this
  // replica's ("per replica"), to combine with reduce().
  template <typename Fn, typename... Args>
  decltype(auto) run(Fn&& step_fn, Args&&... args) {
    return std::forward<Fn>(step_fn)(std::forward<Args>(args)...);
  }
  // The sum or mean over the replicas of a per-replica value (same shape and dtype on each); every
  // replica gets it. Collective.
  Tensor reduce(Reduction op, const Tensor& per_replica);

 protected:
  // What fit() talks to; nullptr for one replica.
  virtual ReplicaContext* replica_context() = 0;
};

// One replica, no communication: code written for a strategy runs alone unchanged.
class DefaultStrategy : public Strategy {
 public:
  int num_replicas_in_sync() const override { return 1; }
  int replica_id() const override { return 0; }
  std::vector<Tensor> reduce_gradients(const std::vector<Tensor>& grads) override { return grads; }
  void broadcast_variables(const std::vector<Variable>&) override {}

 protected:
  ReplicaContext* replica_context() override { return nullptr; }
};

}  // namespace gradflow::strategies
