#include "core/nn/replica_context.h"

#include <algorithm>

#include "core/ops/ops.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace {
thread_local ReplicaContext* g_current = nullptr;
}  // namespace

ReplicaContext* current_replica_context() { return g_current; }

std::vector<Tensor> ReplicaContext::sum_replica_gradients(const std::vector<std::vector<Tensor>>& grads,
                                                         const std::vector<Variable>& vars) {
  std::vector<Tensor> summed(vars.size());
  for (size_t i = 0; i < vars.size(); ++i) {
    for (const std::vector<Tensor>& replica : grads) {
      if (replica.empty() || !replica[i].defined()) continue;
      Tensor g = replica[i].to(vars[i].device());
      summed[i] = summed[i].defined() ? summed[i] + g : g;
    }
  }
  return summed;
}

void ReplicaContext::run_replicas(const std::function<void(int)>&) {
  throw StateError("run_replicas: this strategy has one replica per process, not replicas on threads");
}

std::vector<int64_t> array_split_bounds(int64_t rows, int64_t n) {
  std::vector<int64_t> bounds(static_cast<size_t>(n) + 1);
  for (int64_t r = 0; r <= n; ++r) bounds[r] = rows / n * r + std::min<int64_t>(r, rows % n);
  return bounds;
}

std::vector<int64_t> ReplicaContext::split_rows(int64_t rows) { return array_split_bounds(rows, num_replicas()); }

std::vector<std::pair<Variable, Tensor>> replicas_mean_of_mean_aggregated(ReplicaContext& ctx,
                                                                          const std::vector<Variable>& vars) {
  std::vector<std::pair<Variable, Tensor>> out;
  if (ctx.in_process() || ctx.num_replicas() < 2) return out;
  std::vector<Variable> averaged;
  std::vector<double> values;
  for (const Variable& v : vars) {
    if (v.aggregation() != VariableAggregation::kMean) continue;
    averaged.push_back(v);
    std::vector<double> mine = v.value_unwatched().to(kF64).reshape({-1}).to_vector<double>();
    values.insert(values.end(), mine.begin(), mine.end());
  }
  if (averaged.empty()) return out;  // the same model everywhere: no replica calls the sum then
  std::vector<double> sums = ctx.sum(values);
  size_t at = 0;
  for (Variable& v : averaged) {
    const int64_t n = v.value_unwatched().numel();
    std::vector<double> mean(sums.begin() + static_cast<std::ptrdiff_t>(at), sums.begin() + static_cast<std::ptrdiff_t>(at + n));
    for (double& m : mean) m /= ctx.num_replicas();
    out.emplace_back(v, from_vector<double>(mean, v.shape()).to(v.dtype()).to(v.device()));
    at += static_cast<size_t>(n);
  }
  return out;
}

void average_mean_aggregated(ReplicaContext& ctx, const std::vector<Variable>& vars) {
  for (auto& [v, mean] : replicas_mean_of_mean_aggregated(ctx, vars)) v.assign(mean);
}

ReplicaContextScope::ReplicaContextScope(ReplicaContext* context, std::optional<Device> device) : previous_(g_current) {
  if (device) device_.emplace(*device);
  g_current = context;
}
ReplicaContextScope::~ReplicaContextScope() { g_current = previous_; }

}  // namespace gradflow
