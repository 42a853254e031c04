// MultiWorkerMirroredStrategy (alias DataParallelStrategy): one process per replica, on one machine or
// many, over the job's communicator (NCCL for GPU tensors, MPI or Gloo for CPU ones). Built from the
// environment, so the same binary works under gfrun, mpirun, srun and TF_CONFIG.
//
// fit() averages gradients in one flat buffer with one all-reduce per step, each replica weighted by its
// rows in the step, so uneven last batches average exactly. reduce_gradients() (custom loops) sends
// buckets of at most bucket_bytes, filled in reverse layer order (the order backward produces them),
// all in flight together on the communicator's progress thread.
#pragma once

#include <memory>

#include "distributed/comm/communicator.h"
#include "distributed/comm/job.h"
#include "strategies/strategy.h"

namespace gradflow::strategies {

struct DataParallelOptions {
  int64_t bucket_bytes = int64_t{25} << 20;  // as PyTorch DDP's default
};

class MultiWorkerMirroredStrategy : public Strategy, private ReplicaContext {
 public:
  // Over a communicator the caller made (tests, or jobs with special needs).
  explicit MultiWorkerMirroredStrategy(std::unique_ptr<distributed::Communicator> comm,
                                       DataParallelOptions options = {});
  // Over the job this process belongs to (cluster::resolve_job + communicator_for_job). Throws
  // CollectiveError when the job's rendezvous fails, ValueError for a malformed environment.
  static std::unique_ptr<MultiWorkerMirroredStrategy> from_environment(
      const distributed::JobCommunicatorOptions& comm_options = {}, DataParallelOptions options = {});

  int num_replicas_in_sync() const override { return comm_->size(); }
  int replica_id() const override { return comm_->rank(); }
  std::vector<Tensor> reduce_gradients(const std::vector<Tensor>& grads) override;
  void broadcast_variables(const std::vector<Variable>& vars) override;
  distributed::Communicator& communicator() { return *comm_; }

 protected:
  ReplicaContext* replica_context() override { return this; }

 private:
  // ReplicaContext
  int num_replicas() const override { return num_replicas_in_sync(); }
  std::pair<std::vector<Tensor>, double> weighted_mean(const std::vector<Tensor>& grads, double weight,
                                                      double nominal) override;
  std::vector<double> sum(const std::vector<double>& values) override;
  uint64_t shared_seed() override;

  // The sums over replicas of tensors (bucketed, async), same order and shapes.
  std::vector<Tensor> all_reduce_sum(const std::vector<Tensor>& tensors);

  std::unique_ptr<distributed::Communicator> comm_;
  DataParallelOptions options_;
};

using DataParallelStrategy = MultiWorkerMirroredStrategy;

}  // namespace gradflow::strategies
