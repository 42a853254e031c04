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

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/gradflow.h"
#include "core/nn/replica_context.h"

namespace gradflow::strategies {

// How reduce() combines the replicas' values.
enum class Reduction { kSum, kMean };

// One value per replica of this process, by local replica index: what run() returns (a single value in
// a process that is one replica), for reduce(). As a run() argument, replica r gets values[r].
template <typename T>
struct PerReplica {
  std::vector<T> values;
};

namespace strategy_internal {
template <typename T>
struct IsPerReplica : std::false_type {};
template <typename T>
struct IsPerReplica<PerReplica<T>> : std::true_type {};

// Replica r's part of one run() argument (of n local replicas; begin: the row bounds of each part). A
// scalar Tensor reaches every replica whole.
inline Tensor replica_part(const Tensor& t, int r, int n, const std::vector<int64_t>& begin) {
  return n == 1 || t.rank() == 0 ? t : t.slice(0, begin[r], begin[r + 1]);
}
template <typename T>
const T& replica_part(const PerReplica<T>& v, int r, int n, const std::vector<int64_t>&) {
  if (static_cast<int>(v.values.size()) != n) {
    throw ValueError(str_cat("run: a PerReplica argument holds ", v.values.size(), " values for ", n, " local replicas"));
  }
  return v.values[static_cast<size_t>(r)];
}
// Anything else reaches every replica as it is.
template <typename T>
  requires(!std::is_same_v<std::remove_cvref_t<T>, Tensor> && !IsPerReplica<std::remove_cvref_t<T>>::value)
T& replica_part(T& v, int, int, const std::vector<int64_t>&) {
  return v;
}

// What the step's Tensor arguments (of rank >= 1: the batch) say about its rows, and the rows of the
// first PerReplica<Tensor> argument's values. ValueError when two batch tensors differ in rows.
struct BatchShape {
  std::optional<int64_t> rows;
  std::vector<int64_t> per_replica_rows;
  int argument = 0;
};
inline void inspect(BatchShape&) {}
template <typename A, typename... Rest>
void inspect(BatchShape& shape, const A& a, const Rest&... rest) {
  ++shape.argument;
  if constexpr (std::is_same_v<std::decay_t<A>, Tensor>) {
    if (a.rank() >= 1) {
      if (shape.rows && *shape.rows != a.dim(0)) {
        throw ValueError(str_cat("run: Tensor argument ", shape.argument, " has ", a.dim(0), " rows, an earlier one ",
                                 *shape.rows, ": Tensor arguments are the batch, split among the replicas along axis ",
                                 "0; pass other values by capture, or as a PerReplica"));
      }
      shape.rows = a.dim(0);
    }
  } else if constexpr (std::is_same_v<std::decay_t<A>, PerReplica<Tensor>>) {
    if (shape.per_replica_rows.empty()) {
      for (const Tensor& t : a.values) shape.per_replica_rows.push_back(t.rank() >= 1 ? t.dim(0) : 1);
    }
  }
  inspect(shape, rest...);
}
}  // namespace strategy_internal

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual int num_replicas_in_sync() const = 0;
  virtual int replica_id() const = 0;

  // While it lives, fit/evaluate on this thread run under this strategy (and models made here live on
  // its first replica's device, where it has one: MirroredStrategy over devices).
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

  // This process's replicas: 1, except MirroredStrategy's n replicas on threads.
  virtual int num_local_replicas() const { return 1; }

  // tf.distribute's strategy.run(fn, args...): runs step_fn once for each replica of this process (one,
  // on the calling thread, where a process is one replica; MirroredStrategy: one per replica thread,
  // concurrently, each with its own random generator). Tensor arguments are this process's batch: each
  // local replica gets its part along axis 0 (as numpy.array_split; they must agree in rows; a scalar
  // reaches every replica whole); a PerReplica argument gives replica r its values[r]; anything else
  // reaches every replica as it is. Inside, strategy.gradient() averages across all replicas (weighted
  // by their rows of the batch, or of a PerReplica<Tensor> argument's values) and an optimizer's
  // apply_gradients updates the shared variables once. Returns every local replica's result, for
  // reduce(). The model must be built before (its first call on the calling thread, or an input_shape).
  template <typename Fn, typename... Args>
  auto run(Fn&& step_fn, Args&&... args) {
    using strategy_internal::replica_part;
    using R = std::invoke_result_t<Fn&, decltype(replica_part(args, 0, 1, std::vector<int64_t>{}))...>;
    const int n = num_local_replicas();
    strategy_internal::BatchShape shape;
    strategy_internal::inspect(shape, args...);
    const std::vector<int64_t> begin = array_split_bounds(shape.rows.value_or(n), n);
    // Each replica's weight in strategy.gradient's average: its rows of the batch (or of its PerReplica
    // value); 1 each without either.
    std::vector<double> weights;
    for (int r = 0; r < n; ++r) {
      if (shape.rows || static_cast<int>(shape.per_replica_rows.size()) != n) {
        weights.push_back(shape.rows ? static_cast<double>(begin[r + 1] - begin[r]) : 1.0);
      } else {
        weights.push_back(static_cast<double>(shape.per_replica_rows[r]));
      }
    }
    if constexpr (std::is_void_v<R>) {
      run_local_replicas(weights, [&](int r) { step_fn(replica_part(args, r, n, begin)...); });
    } else {
      std::vector<std::optional<R>> out(static_cast<size_t>(n));
      run_local_replicas(weights, [&](int r) { out[r].emplace(step_fn(replica_part(args, r, n, begin)...)); });
      PerReplica<R> result;
      for (std::optional<R>& v : out) result.values.push_back(std::move(*v));
      return result;
    }
  }
  // The sum or mean over all replicas of a per-replica value (same shape and dtype on each): this
  // process's values summed in order, then across processes; the mean divides by num_replicas_in_sync().
  // Every replica gets it. Collective.
  Tensor reduce(Reduction op, const PerReplica<Tensor>& per_replica);
  // The same for a value that each process holds once for all its replicas (a process that is one
  // replica: its replica's value; MirroredStrategy: the process's): summed or averaged over processes.
  Tensor reduce(Reduction op, const Tensor& per_process);

 protected:
  // What fit() talks to; nullptr for one replica.
  virtual ReplicaContext* replica_context() = 0;
  // Where scope() places models (nullopt: the DeviceScope in effect stays).
  virtual std::optional<Device> scope_device() const { return std::nullopt; }
  // Runs fn(r) for each local replica r (weights[r]: its rows in the step, for gradient averaging) and
  // returns when all have; rethrows the first error. One replica: fn(0) on the calling thread.
  virtual void run_local_replicas(const std::vector<double>& weights, const std::function<void(int)>& fn) { fn(0); }

 private:
  // The processes taking part (a process holds num_local_replicas() replicas).
  int num_processes();
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
