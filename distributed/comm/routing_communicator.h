// RoutingCommunicator: one communicator for a rank that has both CPU and CUDA tensors to exchange. Each op
// goes to the communicator for where its tensors live: CUDA tensors to the NCCL one, CPU tensors to the
// MPI or Gloo one (as c10d's "cpu:gloo,cuda:nccl"). What communicator_for_job returns for kAuto on a rank
// with a GPU. Each route numbers its own ops, so every rank must send the same op to the same device.
#pragma once

#include <memory>

#include "distributed/comm/communicator.h"

namespace gradflow::distributed {

class RoutingCommunicator : public Communicator {
 public:
  // Both span the same ranks in the same order.
  RoutingCommunicator(std::unique_ptr<Communicator> cpu, std::unique_ptr<Communicator> cuda);

  int rank() const override { return cpu_->rank(); }
  int size() const override { return cpu_->size(); }
  Backend backend() const override { return Backend::kAuto; }  // routes by device
  std::string transport() const override { return str_cat("cpu: ", cpu_->transport(), ", cuda: ", cuda_->transport()); }
  Communicator& cpu() { return *cpu_; }
  Communicator& cuda() { return *cuda_; }

  WorkPtr all_reduce(std::vector<Tensor> tensors, const AllReduceOptions& options = {}) override;
  void all_reduce_in_place(const Tensor& tensor, ReduceOp op = ReduceOp::kSum,
                           std::optional<Timeout> timeout = std::nullopt) override;
  Tensor allocate_for_all_reduce(Shape shape, DType dtype, Device device = kCPU) override {
    return (device.is_cuda() ? cuda_ : cpu_)->allocate_for_all_reduce(std::move(shape), dtype, device);
  }
  Tensor allocate_shared(int64_t bytes) override { return cpu_->allocate_shared(bytes); }
  void all_gather_in_place(const Tensor& tensor) override {
    (tensor.defined() && tensor.device().is_cuda() ? cuda_ : cpu_)->all_gather_in_place(tensor);
  }
  WorkPtr broadcast(std::vector<Tensor> tensors, const BroadcastOptions& options = {}) override;
  WorkPtr reduce(std::vector<Tensor> tensors, const ReduceOptions& options = {}) override;
  WorkPtr all_gather(const Tensor& input, const AllGatherOptions& options = {}) override;
  WorkPtr all_gather_v(const Tensor& input, const AllGatherOptions& options = {}) override;
  WorkPtr reduce_scatter(const Tensor& input, const ReduceScatterOptions& options = {}) override;
  WorkPtr all_to_all(const Tensor& input, const AllToAllOptions& options = {}) override;
  // barrier and recv (which has no tensor to look at) use the CPU route.
  WorkPtr barrier(const BarrierOptions& options = {}) override;
  WorkPtr send(const Tensor& tensor, int dst, const PointToPointOptions& options = {}) override;
  WorkPtr recv(Shape shape, DType dtype, int src, const PointToPointOptions& options = {}) override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  void abort(const std::string& reason) override;
  std::shared_ptr<Store> store() override { return cpu_->store(); }
  std::function<std::string()> failure_probe() override {
    return [cpu = cpu_->failure_probe(), cuda = cuda_->failure_probe()] {
      std::string why = cpu();
      return why.empty() ? cuda() : why;
    };
  }

 private:
  // The route for tensors that all live on one kind of device; ValueError naming the op when they mix.
  Communicator& route(const char* op, const std::vector<Tensor>& tensors);

  std::unique_ptr<Communicator> cpu_;
  std::unique_ptr<Communicator> cuda_;
};

}  // namespace gradflow::distributed
