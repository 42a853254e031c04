// Collectives between the GPUs of one process, for strategies with one replica per GPU in one process
// (MirroredStrategy): tf.distribute's NcclAllReduce. The NCCL implementation makes one communicator per
// device (ncclCommInitAll) and issues one call per device inside ncclGroupStart/ncclGroupEnd, each on
// gradflow's stream of its device: after the kernels that wrote the inputs, before those that read the
// results, with no wait on the host.
#pragma once

#include <memory>
#include <vector>

#include "core/tensor/tensor.h"

namespace gradflow::distributed {

class LocalDeviceGroup {
 public:
  virtual ~LocalDeviceGroup() = default;
  // The CUDA device index of each member, in member order.
  virtual const std::vector<int>& devices() const = 0;
  // values[i] on cuda:devices()[i], all of one shape and dtype (not bool): their sum, result[i] on
  // cuda:devices()[i] (the same values on every device). ValueError naming the member whose value does
  // not fit; CollectiveError when NCCL fails, after which the group is aborted and every later call
  // throws CollectiveError (kAborted) too.
  virtual std::vector<Tensor> all_reduce_sum(const std::vector<Tensor>& values) = 0;
  // For each i, the sum of values[m][i] over the members m, on member root's device: every values[m][i]
  // on member m's device, one shape and dtype per i (not bool). One group call for the whole list.
  virtual std::vector<Tensor> reduce_sum(const std::vector<std::vector<Tensor>>& values, int root) = 0;
  // values[root]'s contents into every other member's tensor, in place; the same checks.
  virtual void broadcast(const std::vector<Tensor>& values, int root) = 0;
};

// True when gradflow was built with NCCL.
bool local_device_group_built();
// A group over the given CUDA devices. ValueError for an empty list, a repeated device or a build
// without NCCL (local_device_group_built()); DeviceError for a device this process cannot see;
// CollectiveError when NCCL cannot set up.
std::unique_ptr<LocalDeviceGroup> make_local_device_group(const std::vector<int>& devices);

}  // namespace gradflow::distributed
