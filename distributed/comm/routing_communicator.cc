#include "distributed/comm/routing_communicator.h"

namespace gradflow::distributed {

RoutingCommunicator::RoutingCommunicator(std::unique_ptr<Communicator> cpu, std::unique_ptr<Communicator> cuda)
    : cpu_(std::move(cpu)), cuda_(std::move(cuda)) {
  if (cpu_->rank() != cuda_->rank() || cpu_->size() != cuda_->size()) {
    throw ValueError(str_cat("RoutingCommunicator: the CPU route is rank ", cpu_->rank(), " of ", cpu_->size(),
                             " but the CUDA route rank ", cuda_->rank(), " of ", cuda_->size()));
  }
}

Communicator& RoutingCommunicator::route(const char* op, const std::vector<Tensor>& tensors) {
  if (tensors.empty() || !tensors[0].defined()) return *cpu_;  // the route reports the bad argument
  bool on_cuda = tensors[0].device().is_cuda();
  for (const Tensor& t : tensors) {
    if (t.defined() && t.device().is_cuda() != on_cuda) {
      throw ValueError(str_cat(op, ": tensors on ", tensors[0].device().str(), " and ", t.device().str(),
                               " in one call; pass each device's tensors in a call of their own"));
    }
  }
  return on_cuda ? *cuda_ : *cpu_;
}

WorkPtr RoutingCommunicator::all_reduce(std::vector<Tensor> tensors, const AllReduceOptions& options) {
  Communicator& to = route("all_reduce", tensors);
  return to.all_reduce(std::move(tensors), options);
}
void RoutingCommunicator::all_reduce_in_place(const Tensor& tensor, ReduceOp op, std::optional<Timeout> timeout) {
  route("all_reduce", {tensor}).all_reduce_in_place(tensor, op, timeout);
}
WorkPtr RoutingCommunicator::broadcast(std::vector<Tensor> tensors, const BroadcastOptions& options) {
  Communicator& to = route("broadcast", tensors);
  return to.broadcast(std::move(tensors), options);
}
WorkPtr RoutingCommunicator::reduce(std::vector<Tensor> tensors, const ReduceOptions& options) {
  Communicator& to = route("reduce", tensors);
  return to.reduce(std::move(tensors), options);
}
WorkPtr RoutingCommunicator::all_gather(const Tensor& input, const AllGatherOptions& options) {
  return route("all_gather", {input}).all_gather(input, options);
}
WorkPtr RoutingCommunicator::all_gather_v(const Tensor& input, const AllGatherOptions& options) {
  return route("all_gather_v", {input}).all_gather_v(input, options);
}
WorkPtr RoutingCommunicator::reduce_scatter(const Tensor& input, const ReduceScatterOptions& options) {
  return route("reduce_scatter", {input}).reduce_scatter(input, options);
}
WorkPtr RoutingCommunicator::all_to_all(const Tensor& input, const AllToAllOptions& options) {
  return route("all_to_all", {input}).all_to_all(input, options);
}
WorkPtr RoutingCommunicator::barrier(const BarrierOptions& options) { return cpu_->barrier(options); }
WorkPtr RoutingCommunicator::send(const Tensor& tensor, int dst, const PointToPointOptions& options) {
  return route("send", {tensor}).send(tensor, dst, options);
}
WorkPtr RoutingCommunicator::recv(Shape shape, DType dtype, int src, const PointToPointOptions& options) {
  return cpu_->recv(std::move(shape), dtype, src, options);
}

std::unique_ptr<Communicator> RoutingCommunicator::split(int color, int key) {
  std::unique_ptr<Communicator> cpu = cpu_->split(color, key);
  std::unique_ptr<Communicator> cuda = cuda_->split(color, key);
  if (!cpu) return nullptr;
  return std::make_unique<RoutingCommunicator>(std::move(cpu), std::move(cuda));
}

void RoutingCommunicator::abort(const std::string& reason) {
  cpu_->abort(reason);
  cuda_->abort(reason);
}

}  // namespace gradflow::distributed
