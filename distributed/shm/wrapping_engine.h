// WrappingEngine: what ShmEngine and HierarchicalEngine share. Every call goes to the engine it wraps
// (MPI or Gloo) unless the subclass does it itself, and a split is wrapped again by share_memory_on_host,
// so that a sub-communicator's ranks share memory when theirs can.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "distributed/comm/engine.h"
#include "distributed/shm/shm_engine.h"

namespace gradflow::distributed::shm_internal {

using Clock = std::chrono::steady_clock;

// now + timeout, saturated: a timeout of "forever" must not wrap around into the past.
inline Clock::time_point deadline_after(Timeout timeout) {
  const Clock::time_point now = Clock::now();
  const auto room = std::chrono::duration_cast<Timeout>(Clock::time_point::max() - now);
  return timeout >= room ? Clock::time_point::max() : now + timeout;
}

class WrappingEngine : public Engine {
 public:
  WrappingEngine(std::unique_ptr<Engine> inner, SharedMemoryConfig config)
      : inner_(std::move(inner)), config_(std::move(config)) {}

  Backend backend() const override { return inner_->backend(); }
  std::string transport() const override { return inner_->transport(); }
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  bool supports_device(Device device) const override { return inner_->supports_device(device); }
  Device staging_device() const override { return inner_->staging_device(); }
  bool supports_reduction(DType dtype, ReduceOp op) const override { return inner_->supports_reduction(dtype, op); }
  bool native_avg() const override { return inner_->native_avg(); }
  bool honours_timeouts() const override { return inner_->honours_timeouts(); }
  bool inline_only() const override { return inner_->inline_only(); }

  void all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, Timeout timeout) override {
    inner_->all_reduce(in, out, count, dtype, op, timeout);
  }
  void broadcast(void* buffer, int64_t count, DType dtype, int root, Timeout timeout) override {
    inner_->broadcast(buffer, count, dtype, root, timeout);
  }
  void reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, int root, Timeout timeout) override {
    inner_->reduce(in, out, count, dtype, op, root, timeout);
  }
  void all_gather(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype,
                  Timeout timeout) override {
    inner_->all_gather(in, out, counts, dtype, timeout);
  }
  void reduce_scatter(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype, ReduceOp op,
                      Timeout timeout) override {
    inner_->reduce_scatter(in, out, counts, dtype, op, timeout);
  }
  void all_to_all(const void* in, const std::vector<int64_t>& send_counts, void* out,
                  const std::vector<int64_t>& recv_counts, DType dtype, Timeout timeout) override {
    inner_->all_to_all(in, send_counts, out, recv_counts, dtype, timeout);
  }
  void barrier(Timeout timeout) override { inner_->barrier(timeout); }
  void send(const void* buffer, int64_t count, DType dtype, int dst, int tag, Timeout timeout) override {
    inner_->send(buffer, count, dtype, dst, tag, timeout);
  }
  void recv(void* buffer, int64_t count, DType dtype, int src, int tag, Timeout timeout) override {
    inner_->recv(buffer, count, dtype, src, tag, timeout);
  }
  void interrupt() override { inner_->interrupt(); }

  std::unique_ptr<Engine> split(int color, const std::vector<int>& members, int new_rank,
                                std::shared_ptr<Store> store) override {
    SharedMemoryConfig config = config_;
    config.store = store;
    std::unique_ptr<Engine> part = inner_->split(color, members, new_rank, std::move(store));
    if (!part) return nullptr;
    return share_memory_on_host(std::move(part), config);
  }

 protected:
  std::unique_ptr<Engine> inner_;  // every op this engine does not do itself
  SharedMemoryConfig config_;
};

}  // namespace gradflow::distributed::shm_internal
