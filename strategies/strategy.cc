#include "strategies/strategy.h"

namespace gradflow::strategies {

std::unique_ptr<ReplicaContextScope> Strategy::scope() {
  return std::make_unique<ReplicaContextScope>(replica_context());
}

Tensor Strategy::reduce(Reduction op, const Tensor& per_replica) {
  ReplicaContext* ctx = replica_context();
  if (ctx == nullptr || ctx->num_replicas() == 1) return per_replica;
  Tensor total = ctx->all_reduce_sum(per_replica);
  return op == Reduction::kMean ? total / static_cast<double>(ctx->num_replicas()) : total;
}

Dataset Strategy::distribute_dataset(const Dataset& ds, AutoShardPolicy policy) const {
  return auto_shard(ds, num_replicas_in_sync(), replica_id(), policy);
}

}  // namespace gradflow::strategies
