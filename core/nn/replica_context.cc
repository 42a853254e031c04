#include "core/nn/replica_context.h"

namespace gradflow {
namespace {
thread_local ReplicaContext* g_current = nullptr;
}  // namespace

ReplicaContext* current_replica_context() { return g_current; }

ReplicaContextScope::ReplicaContextScope(ReplicaContext* context) : previous_(g_current) { g_current = context; }
ReplicaContextScope::~ReplicaContextScope() { g_current = previous_; }

}  // namespace gradflow
