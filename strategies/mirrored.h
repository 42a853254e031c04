// MirroredStrategy: several replicas in one process, each on its own thread, sharing the model's
// variables (one CPU device; tf.distribute's MirroredStrategy for CPU-only nodes and for testing).
//
//   strategies::MirroredStrategy strategy(4);
//   auto scope = strategy.scope();
//   model.fit(x, y, {.batch_size = 32});   // a global batch of 4 x 32, one part per replica thread
//
// fit takes each step's global batch on the calling thread, runs every replica's forward and backward
// on its part concurrently (own tape, own random generator, SyncBatchNormalization's statistics summed
// across the threads), averages the gradients weighted by rows and applies one update. evaluate and
// predict run on the calling thread, which has all the data. Custom loops: distribute_dataset joins one
// batch per replica into each step's batch, and run(step_fn, batch) runs step_fn on every replica's
// thread with its part; there strategy.gradient() averages across the threads and apply_gradients
// updates the shared variables once.
//
// MirroredStrategy({Device::cuda(0), Device::cuda(1)}) puts replica r on devices[r] with its own copy of
// every variable there (Variable::mirror_on, made when fit starts or broadcast_variables is called):
// each replica's forward and backward run on its device, gradients are summed across devices on replica
// 0's (copied there, in replica order), the update runs once on replica 0's variables and is copied to
// the others. Models made inside scope() live on devices[0]. Any devices may be listed, also the CPU
// (twice, for testing the copies). How the sums cross devices is tf.distribute's cross_device_ops: when
// every device is a distinct GPU, NCCL all-reduces in one group call, each GPU keeping its sum
// (NcclAllReduce); otherwise copies to the first contributor's device, summed there in replica order
// and copied back (ReductionToOneDevice).
#pragma once

#include <memory>
#include <vector>

#include "strategies/strategy.h"

namespace gradflow::distributed {
class LocalDeviceGroup;
}

namespace gradflow::strategies {

// How MirroredStrategy sums the replicas' values across devices.
enum class CrossDeviceOps {
  kAuto,                  // kNcclAllReduce over two or more distinct GPUs where NCCL sets up, else copies
  kNcclAllReduce,         // ncclAllReduce on every GPU inside one ncclGroupStart/End
  kReductionToOneDevice,  // device copies, summed on one device
};

class MirroredStrategy : public Strategy, private ReplicaContext {
 public:
  // ValueError unless num_replicas >= 1.
  explicit MirroredStrategy(int num_replicas);
  // One replica per device, each with its own copies of the variables. ValueError when empty;
  // DeviceError naming a device this process cannot use.
  // kNcclAllReduce where it cannot be used (a CPU device, a GPU listed twice, no NCCL) is a ValueError.
  explicit MirroredStrategy(std::vector<Device> devices, CrossDeviceOps cross_device_ops = CrossDeviceOps::kAuto);
  ~MirroredStrategy() override;

  int num_replicas_in_sync() const override { return num_replicas_; }
  int replica_id() const override { return 0; }
  int num_local_replicas() const override { return num_replicas_; }
  // What sums across devices (never kAuto); kReductionToOneDevice also when the replicas share variables.
  CrossDeviceOps cross_device_ops() const { return cross_device_ops_; }
  // On a replica thread (inside run): the gradients averaged across the replicas, weighted by their
  // rows (the identical tensors on every replica). On the calling thread, which holds every replica's
  // data: tape.gradient, already the average.
  std::vector<Tensor> gradient(GradientTape& tape, const Tensor& target, const std::vector<Variable>& vars) override;
  std::vector<Tensor> reduce_gradients(const std::vector<Tensor>& grads) override;
  // Shared variables: nothing to do. Over devices: every replica gets its copy of each variable.
  void broadcast_variables(const std::vector<Variable>& vars) override;

 protected:
  ReplicaContext* replica_context() override { return this; }
  std::optional<Device> scope_device() const override;
  void run_local_replicas(const std::vector<double>& weights, const std::function<void(int)>& fn) override;

 private:
  class ThreadReplica;
  struct Rendezvous;
  class ReplicaThreads;

  // ReplicaContext, as the calling thread sees it.
  std::string strategy_name() const override { return "MirroredStrategy"; }
  int num_replicas() const override { return num_replicas_; }
  bool in_process() const override { return true; }
  void run_replicas(const std::function<void(int)>& fn) override;
  std::vector<Tensor> sum_replica_gradients(const std::vector<std::vector<Tensor>>& grads,
                                            const std::vector<Variable>& vars) override;
  std::unique_ptr<GradientAverager> average_gradients(const std::vector<Variable>& vars, double weight,
                                                      double nominal, bool weighted_loss) override;
  std::vector<double> sum(const std::vector<double>& values) override { return values; }
  Tensor all_reduce_sum(const Tensor& t) override { return t; }
  uint64_t shared_seed() override;

  // The replica whose thread this is (inside run), or -1.
  int replica_on_this_thread() const;

  int num_replicas_;
  std::vector<Device> devices_;  // empty: replicas share the variables
  CrossDeviceOps cross_device_ops_ = CrossDeviceOps::kReductionToOneDevice;
  std::vector<Variable> kept_by_replica_0_;  // non-trainable copied variables: refreshed after each run
  std::vector<double> weights_;  // each replica's rows in the running step (run)
  std::unique_ptr<Rendezvous> rendezvous_;
  std::vector<std::unique_ptr<ThreadReplica>> replicas_;
  std::unique_ptr<ReplicaThreads> threads_;  // started by the first run_replicas
};

}  // namespace gradflow::strategies
