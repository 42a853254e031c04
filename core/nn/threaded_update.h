// The update of replicas on threads that share the variables in host memory (MirroredStrategy(n) on the
// CPU), split among the replica threads: each sums its part of every gradient over the replicas, in
// replica order (the bits ReplicaContext::sum_replica_gradients gives), and updates that part of the
// variable and its slots (Optimizer::update_part). Neither the sum nor the update then runs on one
// thread while the others wait, and each core writes only its own part of variables both cores read.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "core/nn/replica_context.h"
#include "core/optim/optimizer.h"

namespace gradflow {

// The flat elements [begin, end) of a tensor of `numel` elements of `dtype` that replica r of n sums or
// updates when threads split the work: whole cache lines, so that no two threads write one line.
std::pair<int64_t, int64_t> thread_part(int64_t numel, DType dtype, int r, int n);

class ThreadedUpdate {
 public:
  // nullptr where the update cannot be split this way: one replica, an optimizer whose update of an
  // element needs other elements (splits_elementwise), or a variable that is not a contiguous f32/f64
  // CPU tensor of its own (mirrored copies on devices). Builds the optimizer's slots, on this thread.
  static std::unique_ptr<ThreadedUpdate> make(ReplicaContext& ctx, const std::vector<Variable>& vars,
                                              optimizers::Optimizer& optimizer);

  // Whether it was made for these variables and this optimizer (fit asks at every step).
  bool matches(const std::vector<Variable>& vars, const optimizers::Optimizer& optimizer) const;

  // apply_gradients(sum over r of grads[r], vars, scale), the sum and the update split among the replica
  // threads (ctx.run_replicas); grads[r] is empty for a replica with nothing to add, grads[r][i]
  // undefined where replica r has no gradient of vars[i]. false, having changed nothing, where a
  // gradient is not a contiguous CPU tensor like its variable, or no variable has one: the caller then
  // updates as usual.
  bool apply(ReplicaContext& ctx, const std::vector<std::vector<Tensor>>& grads, double scale);

  // Inside MirroredStrategy's run(), where every replica holds the same whole gradients (strategy.gradient's
  // averages) and calls apply_gradients: replica r updates its part of every variable and its slots, all at
  // once, the iteration counter left for one of them to advance after all (Optimizer::advance_iterations).
  // fits: whether grads suit such an update of vars (one per variable, each undefined or a contiguous CPU
  // tensor of its variable's shape and dtype, at least one defined); otherwise apply_gradients updates
  // as usual.
  static bool fits(const std::vector<Variable>& vars, const std::vector<Tensor>& grads);
  void apply_part(int r, const std::vector<Tensor>& grads, double scale);

 private:
  ThreadedUpdate(std::vector<Variable> vars, optimizers::Optimizer& optimizer, int replicas);
  // Replica r's part of the update with whole gradients grads (undefined: skipped).
  void update_part(int r, const std::vector<Tensor>& grads, double scale);

  std::vector<Variable> vars_;
  optimizers::Optimizer& optimizer_;
  // Per replica, per variable: the flat elements [begin, end) it sums and updates (whole cache lines,
  // so that no two threads write one line), and that part of the variable and its slots.
  struct Part {
    int64_t begin = 0, end = 0;
  };
  std::vector<std::vector<Part>> parts_;
  std::vector<std::vector<optimizers::Optimizer::UpdatePart>> updates_;
};

}  // namespace gradflow
