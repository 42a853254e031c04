#include "core/nn/replica_context.h"

#include <algorithm>

#include "core/tensor/error.h"

namespace gradflow {
namespace {
thread_local ReplicaContext* g_current = nullptr;
}  // namespace

ReplicaContext* current_replica_context() { return g_current; }

void ReplicaContext::run_replicas(const std::function<void(int)>&) {
  throw StateError("run_replicas: this strategy has one replica per process, not replicas on threads");
}

std::vector<int64_t> array_split_bounds(int64_t rows, int64_t n) {
  std::vector<int64_t> bounds(static_cast<size_t>(n) + 1);
  for (int64_t r = 0; r <= n; ++r) bounds[r] = rows / n * r + std::min<int64_t>(r, rows % n);
  return bounds;
}

std::vector<int64_t> ReplicaContext::split_rows(int64_t rows) { return array_split_bounds(rows, num_replicas()); }

ReplicaContextScope::ReplicaContextScope(ReplicaContext* context) : previous_(g_current) { g_current = context; }
ReplicaContextScope::~ReplicaContextScope() { g_current = previous_; }

}  // namespace gradflow
