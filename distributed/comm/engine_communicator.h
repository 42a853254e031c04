// EngineCommunicator: the one Communicator implementation, over any Engine. It checks the inputs (bad
// ones throw ValueError at the call, naming the value), packs lists of tensors into one buffer per dtype,
// stages tensors the engine cannot reach through host memory, converts dtypes the engine cannot reduce,
// and hands each op to its OpRunner, which numbers it, runs it and watches it.
#pragma once

#include <array>
#include <atomic>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "distributed/comm/communicator.h"
#include "distributed/comm/engine.h"
#include "distributed/comm/op_runner.h"

namespace gradflow::distributed {

struct CommSettings {
  CommunicatorOptions options;       // timeouts, debug, heartbeat (rank and size come from the engine)
  std::shared_ptr<Store> job_store;  // the root communicator's prefixed store; null without a store
  std::shared_ptr<Store> comm_store; // this communicator's keys; the root's is job_store
  bool root = true;                  // not made by split()
};

class EngineCommunicator : public Communicator {
 public:
  EngineCommunicator(std::unique_ptr<Engine> engine, CommSettings settings);
  ~EngineCommunicator() override;

  int rank() const override { return engine_->rank(); }
  int size() const override { return engine_->size(); }
  Backend backend() const override { return engine_->backend(); }
  std::string transport() const override { return engine_->transport(); }

  WorkPtr all_reduce(std::vector<Tensor> tensors, const AllReduceOptions& options = {}) override;
  void all_reduce_in_place(const Tensor& tensor, ReduceOp op = ReduceOp::kSum,
                           std::optional<Timeout> timeout = std::nullopt) override;
  Tensor allocate_for_all_reduce(Shape shape, DType dtype, Device device = kCPU) override;
  Tensor allocate_shared(int64_t bytes) override;
  void all_gather_in_place(const Tensor& tensor) override;
  WorkPtr broadcast(std::vector<Tensor> tensors, const BroadcastOptions& options = {}) override;
  WorkPtr reduce(std::vector<Tensor> tensors, const ReduceOptions& options = {}) override;
  WorkPtr all_gather(const Tensor& input, const AllGatherOptions& options = {}) override;
  WorkPtr all_gather_v(const Tensor& input, const AllGatherOptions& options = {}) override;
  WorkPtr reduce_scatter(const Tensor& input, const ReduceScatterOptions& options = {}) override;
  WorkPtr all_to_all(const Tensor& input, const AllToAllOptions& options = {}) override;
  WorkPtr barrier(const BarrierOptions& options = {}) override;
  WorkPtr send(const Tensor& tensor, int dst, const PointToPointOptions& options = {}) override;
  WorkPtr recv(Shape shape, DType dtype, int src, const PointToPointOptions& options = {}) override;
  std::unique_ptr<Communicator> split(int color, int key) override;
  void abort(const std::string& reason) override;
  std::shared_ptr<Store> store() override { return user_store_; }
  std::function<std::string()> failure_probe() override { return runner_->failure_probe(); }

 private:
  // How a reduction reaches the engine: the dtype on the wire, the engine's op, and whether kAvg is
  // finished here by dividing by the size.
  struct ReducePlan {
    DType wire;
    ReduceOp op;
    bool divide;
  };
  ReducePlan plan_reduction(const char* op_name, DType dtype, ReduceOp op) const;
  ReducePlan work_out_plan(const char* op_name, DType dtype, ReduceOp op) const;
  Device work_device(const Tensor& t) const;
  Tensor staged(const Tensor& t) const;  // contiguous, on a device the engine reaches
  Timeout op_timeout(const std::optional<Timeout>& timeout) const;
  std::vector<int64_t> exchange_counts(int64_t mine, Device device, Timeout timeout, bool all_to_all_splits,
                                       const std::vector<int64_t>& splits);
  Tensor reduce_packed(const std::vector<Tensor>& tensors, ReducePlan plan, ReduceOp op, int root,
                       Timeout timeout, bool all);
  static std::string all_reduce_signature(const Tensor& t, ReduceOp op);  // "all_reduce([4] f32, sum)"
  // Whether the engine reduces t as it is: its dtype on the wire, on a device it reaches, contiguous.
  bool engine_takes(const Tensor& t, const ReducePlan& plan) const;
  // The engine's reduction of t into its own memory, then kAvg's division where the engine has none.
  void reduce_in_place(const Tensor& t, const ReducePlan& plan, ReduceOp op, Timeout engine_timeout);
  struct AllReduceWork;
  WorkPtr submit_all_reduce(std::vector<Tensor> io, ReducePlan plan, const AllReduceOptions& options);
  WorkPtr submit_reduction(const char* name, std::function<std::string()> signature, std::vector<Tensor> tensors,
                           ReduceOp op, std::optional<int> root, const std::optional<Timeout>& timeout, bool async,
                           bool in_place);
  WorkPtr submit(const char* name, std::function<std::string()> signature, bool collective, const std::optional<Timeout>& timeout,
                 bool async, std::function<std::vector<Tensor>(Timeout)> body);
  void check_rank(const char* what, int value) const;

  std::unique_ptr<Engine> engine_;
  CommSettings settings_;
  // work_out_plan's answer for each dtype and op (nullopt where it throws), worked out once: a small op
  // should not ask the engine the same questions every call.
  std::array<std::array<std::optional<ReducePlan>, kNumReduceOps>, kNumDTypes> plans_;
  std::shared_ptr<Store> user_store_;  // "user/" in comm_store
  int splits_ = 0;
  // The single-tensor all-reduce's Work, reused by the next one once no caller holds it (no allocation
  // per small op); spare_in_use_ is held while a call checks and reuses it.
  std::shared_ptr<AllReduceWork> spare_all_reduce_;
  std::atomic<bool> spare_in_use_{false};
  std::unique_ptr<OpRunner> runner_;  // last: stopped before the engine goes away
};

}  // namespace gradflow::distributed
