#include "strategies/strategy.h"

namespace gradflow::strategies {

std::unique_ptr<ReplicaContextScope> Strategy::scope() {
  return std::make_unique<ReplicaContextScope>(replica_context(), scope_device());
}

int Strategy::num_processes() {
  ReplicaContext* ctx = replica_context();
  return ctx == nullptr || ctx->in_process() ? 1 : ctx->num_replicas();
}

Tensor Strategy::reduce(Reduction op, const PerReplica<Tensor>& per_replica) {
  if (per_replica.values.empty()) throw ValueError("reduce: the PerReplica value holds no values");
  Tensor local = per_replica.values[0];
  // Replicas over devices (MirroredStrategy's copies): summed on the first one's.
  for (size_t r = 1; r < per_replica.values.size(); ++r) local = local + per_replica.values[r].to(local.device());
  Tensor total = num_processes() > 1 ? replica_context()->all_reduce_sum(local) : local;
  return op == Reduction::kMean ? total / static_cast<double>(num_replicas_in_sync()) : total;
}

Tensor Strategy::reduce(Reduction op, const Tensor& per_process) {
  const int processes = num_processes();
  if (processes == 1) return per_process;
  Tensor total = replica_context()->all_reduce_sum(per_process);
  return op == Reduction::kMean ? total / static_cast<double>(processes) : total;
}

Dataset Strategy::distribute_dataset(const Dataset& ds, AutoShardPolicy policy) const {
  // One process reading for all its replicas: each step takes one batch per replica (run() splits them
  // again).
  if (num_local_replicas() > 1) return ds.merge_batches(num_local_replicas());
  return auto_shard(ds, num_replicas_in_sync(), replica_id(), policy);
}

}  // namespace gradflow::strategies
