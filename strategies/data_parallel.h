// MultiWorkerMirroredStrategy (alias DataParallelStrategy): one process per replica, on one machine or
// many, over the job's communicator (NCCL for GPU tensors, MPI or Gloo for CPU ones). Built from the
// environment, so the same binary works under gfrun, mpirun, srun and TF_CONFIG.
//
// fit() and gradient() (custom loops) average gradients in buckets of at most bucket_bytes, each one's
// all-reduce started on the communicator's progress thread as soon as backward has finished its
// gradients (strategies/gradient_buckets.h), each replica weighted by its rows in the step, so uneven
// last batches average exactly.
#pragma once

#include <memory>

#include "distributed/comm/communicator.h"
#include "distributed/comm/job.h"
#include "strategies/gradient_buckets.h"
#include "strategies/strategy.h"

namespace gradflow::strategies {

// Gradients on the wire: as they are, or rounded to a 16-bit float (half the bytes; the sum is then
// computed in that precision, as with NCCL's f16/bf16).
enum class GradientCompression { kNone, kFloat16, kBFloat16 };

struct DataParallelOptions {
  int64_t bucket_bytes = int64_t{25} << 20;  // as PyTorch DDP's default
  // Start each bucket's all-reduce as soon as backward has finished its gradients (false: all of them
  // after backward; the same result, for comparison).
  bool overlap = true;
  GradientCompression compression = GradientCompression::kNone;
  // Every this many steps (0: never), check that every replica holds bitwise the same trainable
  // variables (a 64-bit hash of each, all-gathered), and fail naming the first variable and the ranks
  // that differ. from_environment turns it on (every 100 steps) under GRADFLOW_DEBUG_COLLECTIVES=1.
  int64_t verify_replicas_every = 0;
  // fit() on tensors splits each global batch among the replicas by their measured speed (rows per
  // second of forward and backward, a moving average exchanged in the gradients' all-reduce) instead of
  // equally, so that a replica on a slower core does not keep the others waiting. The same global
  // batches and the same averaged update up to rounding (each replica is weighted by its rows), but the
  // split depends on timing, so runs are not bitwise repeatable. (fit on a Dataset reads per-replica
  // shards and is not balanced.)
  bool balance_load = false;
  // fit() splits the optimizer's update among the ranks of a host (ZeRO stage 1, as PyTorch's
  // ZeroRedundancyOptimizer): for the length of fit, the trainable variables and their optimizer slots
  // live in one copy that the ranks share (strategies/shared_variables.h); each step every rank receives
  // the summed gradients of its part only (a reduce-scatter in place of the all-reduce), updates that
  // part, and meets the others at a barrier. Each rank does 1/N of the update's work, and the host holds
  // one copy of the optimizer's state instead of N. The same update bit for bit as without it. Used where
  // every rank shares one host's memory, the optimizer updates each element alone (no clipnorm or
  // global_clipnorm), without compression or gradient accumulation, for f32/f64 CPU variables; elsewhere
  // fit updates as usual. Callbacks that change trainable variables mid-fit must write the same values
  // on every rank (all ranks see one copy).
  bool shard_update = false;
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
  std::vector<Tensor> gradient(GradientTape& tape, const Tensor& target, const std::vector<Variable>& vars) override;
  void broadcast_variables(const std::vector<Variable>& vars) override;
  distributed::Communicator& communicator() { return *comm_; }
  const DataParallelOptions& options() const { return options_; }
  // Takes effect from the next step (every replica must set the same).
  void set_options(DataParallelOptions options);
  // balance_load: the replicas' speeds (rows per second) that split the next step; empty before the first.
  const std::vector<double>& replica_speeds() const { return speeds_; }
  // shard_update: how many fits so far split their update (shared the variables).
  int64_t split_fits() const { return split_fits_; }

 protected:
  ReplicaContext* replica_context() override { return this; }

 private:
  // ReplicaContext
  std::string strategy_name() const override { return "MultiWorkerMirroredStrategy"; }
  int num_replicas() const override { return num_replicas_in_sync(); }
  std::unique_ptr<GradientAverager> average_gradients(const std::vector<Variable>& vars, double weight,
                                                      double nominal, bool weighted_loss = false) override;
  std::vector<double> sum(const std::vector<double>& values) override;
  Tensor all_reduce_sum(const Tensor& t) override;
  uint64_t shared_seed() override;
  std::vector<int64_t> split_rows(int64_t rows) override;
  bool splits_rows_by_speed() const override { return options_.balance_load; }
  std::shared_ptr<void> share_for_update(const std::vector<Variable>& vars, optimizers::Optimizer& optimizer) override;
  // Through the job's store (store_exchange.h), not the communicator: nullptr when the job has no store.
  std::unique_ptr<BackgroundSums> background_sums() override;

  // An averager over buckets laid out for tensors like these (the layout and its buffers are kept while
  // the shapes stay the same).
  std::unique_ptr<GradientAverager> averager_for(const std::vector<Tensor>& like, const std::vector<std::string>& names,
                                                 double weight, double nominal, bool weighted_loss = false);

  // The replica-identity check (verify_replicas_every): throws StateError when replicas have diverged.
  void verify_replicas(const std::vector<Variable>& vars);

  std::unique_ptr<distributed::Communicator> comm_;
  DataParallelOptions options_;
  std::shared_ptr<BucketLayout> layout_;
  int64_t steps_ = 0;  // average_gradients calls, for verify_replicas_every
  int64_t background_channels_ = 0;  // background_sums opened, naming each one's keys alike on every rank
  // balance_load: each replica's speed (rows per second), the same on every rank, and the rows the
  // current step gave each replica.
  std::vector<double> speeds_;
  std::vector<int64_t> step_rows_;
  bool sharing_ = false;  // share_for_update's variables are shared now
  int64_t split_fits_ = 0;
};

using DataParallelStrategy = MultiWorkerMirroredStrategy;

}  // namespace gradflow::strategies
