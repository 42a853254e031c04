#include "core/nn/replica_context.h"

#include "core/tensor/error.h"

namespace gradflow {
namespace {
thread_local ReplicaContext* g_current = nullptr;
}  // namespace

ReplicaContext* current_replica_context() { return g_current; }

void ReplicaContext::run_replicas(const std::function<void(int)>&) {
  throw StateError("run_replicas: this strategy has one replica per process, not replicas on threads");
}

ReplicaContextScope::ReplicaContextScope(ReplicaContext* context) : previous_(g_current) { g_current = context; }
ReplicaContextScope::~ReplicaContextScope() { g_current = previous_; }

}  // namespace gradflow
