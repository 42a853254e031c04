#include "strategies/strategy.h"

namespace gradflow::strategies {

std::unique_ptr<ReplicaContextScope> Strategy::scope() {
  return std::make_unique<ReplicaContextScope>(replica_context());
}

Dataset Strategy::distribute_dataset(const Dataset& ds) const {
  return num_replicas_in_sync() == 1 ? ds : ds.shard(num_replicas_in_sync(), replica_id());
}

}  // namespace gradflow::strategies
