#include "strategies/strategy.h"

namespace gradflow::strategies {

std::unique_ptr<ReplicaContextScope> Strategy::scope() {
  return std::make_unique<ReplicaContextScope>(replica_context());
}

Dataset Strategy::distribute_dataset(const Dataset& ds, AutoShardPolicy policy) const {
  return auto_shard(ds, num_replicas_in_sync(), replica_id(), policy);
}

}  // namespace gradflow::strategies
