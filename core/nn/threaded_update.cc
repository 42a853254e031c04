#include "core/nn/threaded_update.h"

#include <algorithm>

#include "core/gradflow.h"
#include "core/tensor/denormals.h"
#include "core/trace/trace.h"

namespace gradflow {
namespace {

constexpr int64_t kLineBytes = 64;

// dst[k] = srcs[0][k] + srcs[1][k] + ..., added in that order, for k in [begin, end).
template <typename T>
void sum_in_order(T* dst, const std::vector<const Tensor*>& srcs, int64_t begin, int64_t end) {
  const T* first = srcs[0]->data<T>();
  for (int64_t k = begin; k < end; ++k) dst[k] = first[k];
  for (size_t s = 1; s < srcs.size(); ++s) {
    const T* src = srcs[s]->data<T>();
    for (int64_t k = begin; k < end; ++k) dst[k] += src[k];
  }
}

Tensor flat_part(const Tensor& t, int64_t begin, int64_t end) { return t.reshape({-1}).slice(0, begin, end); }

}  // namespace

std::pair<int64_t, int64_t> thread_part(int64_t numel, DType dtype, int r, int n) {
  const int64_t per_line = std::max<int64_t>(1, kLineBytes / static_cast<int64_t>(dtype_size(dtype)));
  const int64_t lines = (numel + per_line - 1) / per_line;
  return {std::min(numel, lines * r / n * per_line), std::min(numel, lines * (r + 1) / n * per_line)};
}

std::unique_ptr<ThreadedUpdate> ThreadedUpdate::make(ReplicaContext& ctx, const std::vector<Variable>& vars,
                                                     optimizers::Optimizer& optimizer) {
  if (ctx.num_replicas() < 2 || !optimizer.splits_elementwise() || vars.empty()) return nullptr;
  for (const Variable& v : vars) {
    const Tensor& value = v.value_unwatched();
    if (!value.device().is_cpu() || !value.is_contiguous() || (value.dtype() != kF32 && value.dtype() != kF64) ||
        v.mirrored()) {
      return nullptr;
    }
  }
  optimizer.build(vars);  // the slots, before threads take views of them
  return std::unique_ptr<ThreadedUpdate>(new ThreadedUpdate(vars, optimizer, ctx.num_replicas()));
}

ThreadedUpdate::ThreadedUpdate(std::vector<Variable> vars, optimizers::Optimizer& optimizer, int replicas)
    : vars_(std::move(vars)), optimizer_(optimizer), parts_(replicas), updates_(replicas) {
  for (int r = 0; r < replicas; ++r) {
    for (const Variable& v : vars_) {
      const Tensor& value = v.value_unwatched();
      const auto [begin, end] = thread_part(value.numel(), value.dtype(), r, replicas);
      parts_[r].push_back({begin, end});
      updates_[r].push_back(optimizer_.update_part(v, begin, end));
    }
  }
}

bool ThreadedUpdate::matches(const std::vector<Variable>& vars, const optimizers::Optimizer& optimizer) const {
  if (&optimizer != &optimizer_ || vars.size() != vars_.size()) return false;
  for (size_t i = 0; i < vars.size(); ++i) {
    const Tensor& value = vars[i].value_unwatched();
    const Tensor& part = updates_[0][i].values.value_unwatched();
    // The same variable, still over the memory the parts view (an assign() may have replaced it).
    if (!vars[i].same_as(vars_[i]) || value.numel() != vars_[i].value_unwatched().numel() ||
        static_cast<const char*>(value.raw_data()) + parts_[0][i].begin * dtype_size(value.dtype()) !=
            static_cast<const char*>(part.raw_data())) {
      return false;
    }
  }
  return true;
}

bool ThreadedUpdate::apply(ReplicaContext& ctx, const std::vector<std::vector<Tensor>>& grads, double scale) {
  // Per variable, the replicas' gradients in replica order; all checked before anything changes.
  std::vector<std::vector<const Tensor*>> sources(vars_.size());
  bool any = false;
  for (size_t i = 0; i < vars_.size(); ++i) {
    const Tensor& value = vars_[i].value_unwatched();
    for (const std::vector<Tensor>& replica : grads) {
      if (replica.size() <= i || !replica[i].defined()) continue;
      const Tensor& g = replica[i];
      if (!g.device().is_cpu() || !g.is_contiguous() || g.dtype() != value.dtype() || g.numel() != value.numel()) {
        return false;
      }
      sources[i].push_back(&g);
    }
    any = any || !sources[i].empty();
  }
  if (!any) return false;  // apply_gradients raises its error for that
  // Per variable, the gradient to apply: the one replica's, or the sum of several (one buffer, each thread
  // adding its part).
  std::vector<Tensor> totals(vars_.size());
  for (size_t i = 0; i < vars_.size(); ++i) {
    if (sources[i].size() == 1) totals[i] = *sources[i][0];
    if (sources[i].size() > 1) totals[i] = empty(vars_[i].value_unwatched().shape(), vars_[i].value_unwatched().dtype());
  }
  ctx.run_replicas([&](int r) {
    trace::Span span("optimizer");
    internal::DenormalFlushScope flush_denormals;  // as the ops that summed before
    for (size_t i = 0; i < vars_.size(); ++i) {
      const Part& p = parts_[r][i];
      if (sources[i].size() < 2 || p.begin == p.end) continue;
      if (totals[i].dtype() == kF32) {
        sum_in_order(totals[i].data<float>(), sources[i], p.begin, p.end);
      } else {
        sum_in_order(totals[i].data<double>(), sources[i], p.begin, p.end);
      }
    }
    update_part(r, totals, scale);
  });
  optimizer_.advance_iterations();
  return true;
}

bool ThreadedUpdate::fits(const std::vector<Variable>& vars, const std::vector<Tensor>& grads) {
  if (grads.size() != vars.size()) return false;
  bool any = false;
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) continue;
    const Tensor& value = vars[i].value_unwatched();
    if (!grads[i].device().is_cpu() || !grads[i].is_contiguous() || grads[i].dtype() != value.dtype() ||
        grads[i].shape() != value.shape()) {
      return false;
    }
    any = true;
  }
  return any;
}

void ThreadedUpdate::apply_part(int r, const std::vector<Tensor>& grads, double scale) {
  trace::Span span("optimizer");
  update_part(r, grads, scale);
}

void ThreadedUpdate::update_part(int r, const std::vector<Tensor>& grads, double scale) {
  std::vector<Tensor> lane(vars_.size());
  for (size_t i = 0; i < vars_.size(); ++i) {
    const Part& p = parts_[r][i];
    if (grads[i].defined() && p.begin < p.end) lane[i] = flat_part(grads[i], p.begin, p.end);
  }
  optimizer_.apply_gradient_parts(lane, updates_[r], scale, /*advance=*/false);
}

}  // namespace gradflow
