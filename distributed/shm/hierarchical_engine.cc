#include "distributed/shm/hierarchical_engine.h"

#include <algorithm>
#include <chrono>

#include "distributed/comm/reduce_functions.h"
#include "distributed/store/prefix_store.h"

namespace gradflow::distributed {
namespace {

using Clock = std::chrono::steady_clock;

// now + timeout, saturated ("forever" must not wrap into the past).
Clock::time_point deadline_after(Timeout timeout) {
  const Clock::time_point now = Clock::now();
  const auto room = std::chrono::duration_cast<Timeout>(Clock::time_point::max() - now);
  return timeout >= room ? Clock::time_point::max() : now + timeout;
}

Timeout left(Clock::time_point deadline) {
  return std::max(Timeout(1), std::chrono::duration_cast<Timeout>(deadline - Clock::now()));
}

std::shared_ptr<Store> prefixed(const std::shared_ptr<Store>& store, const std::string& prefix) {
  return store ? std::make_shared<PrefixStore>(prefix, store) : nullptr;
}

class HierarchicalEngine final : public Engine {
 public:
  HierarchicalEngine(std::unique_ptr<Engine> inner, std::unique_ptr<Engine> local, std::unique_ptr<Engine> leaders,
                     int hosts, SharedMemoryConfig config)
      : inner_(std::move(inner)),
        local_(std::move(local)),
        leaders_(std::move(leaders)),
        hosts_(hosts),
        config_(std::move(config)) {}

  Backend backend() const override { return inner_->backend(); }
  std::string transport() const override {
    return str_cat(inner_->transport(), " + shared memory within each of ", hosts_, " hosts");
  }
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  bool supports_device(Device device) const override { return inner_->supports_device(device); }
  Device staging_device() const override { return inner_->staging_device(); }
  bool supports_reduction(DType dtype, ReduceOp op) const override { return inner_->supports_reduction(dtype, op); }
  bool native_avg() const override { return inner_->native_avg(); }
  bool honours_timeouts() const override { return inner_->honours_timeouts(); }
  bool inline_only() const override { return inner_->inline_only(); }

  // The host's sum on every rank of the host, the leaders' sum of those, then the leader's result to its
  // host. Each stage gets what is left of the op's timeout.
  void all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, Timeout timeout) override {
    if (reduce_function(dtype, op) == nullptr) return inner_->all_reduce(in, out, count, dtype, op, timeout);
    const Clock::time_point deadline = deadline_after(timeout);
    local_->all_reduce(in, out, count, dtype, op, left(deadline));
    if (leaders_) leaders_->all_reduce(out, out, count, dtype, op, left(deadline));
    local_->broadcast(out, count, dtype, 0, left(deadline));
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

  void interrupt() override {
    inner_->interrupt();
    local_->interrupt();
    if (leaders_) leaders_->interrupt();
  }

  std::unique_ptr<Engine> split(int color, const std::vector<int>& members, int new_rank,
                                std::shared_ptr<Store> store) override {
    SharedMemoryConfig config = config_;
    config.store = store;
    std::unique_ptr<Engine> part = inner_->split(color, members, new_rank, std::move(store));
    if (!part) return nullptr;
    return share_memory_on_host(std::move(part), config);
  }

 private:
  std::unique_ptr<Engine> inner_;    // every rank: the ops other than all-reduce
  std::unique_ptr<Engine> local_;    // this host's ranks, through shared memory
  std::unique_ptr<Engine> leaders_;  // one rank per host; null on the others
  int hosts_;
  SharedMemoryConfig config_;
};

}  // namespace

std::unique_ptr<Engine> make_hierarchical_engine(std::unique_ptr<Engine> inner, const std::vector<int>& host_of_rank,
                                                 const SharedMemoryConfig& config) {
  const int rank = inner->rank();
  const int hosts = *std::max_element(host_of_rank.begin(), host_of_rank.end()) + 1;
  if (hosts == static_cast<int>(host_of_rank.size())) return inner;  // one rank per host: nothing to share
  if (!config.store && inner->backend() != Backend::kMpi) return inner;
  const int host = host_of_rank[rank];
  std::vector<int> members, leaders;
  for (int r = 0; r < static_cast<int>(host_of_rank.size()); ++r) {
    if (host_of_rank[r] == host) members.push_back(r);
    if (std::find(host_of_rank.begin(), host_of_rank.begin() + r, host_of_rank[r]) == host_of_rank.begin() + r) {
      leaders.push_back(r);  // the first rank of its host
    }
  }
  const int local_rank = static_cast<int>(std::find(members.begin(), members.end(), rank) - members.begin());
  const bool leader = local_rank == 0;
  // Both splits are collective over every rank of inner, in this order everywhere.
  const std::string host_prefix = str_cat("shm/host", host);
  std::unique_ptr<Engine> local = inner->split(host, members, local_rank, prefixed(config.store, host_prefix));
  const int leader_rank = leader ? host : -1;  // leaders are numbered by host
  std::unique_ptr<Engine> among_leaders = inner->split(leader ? 0 : -1, leader ? leaders : std::vector<int>{},
                                                       leader_rank, prefixed(config.store, "shm/leaders"));
  SharedMemoryConfig local_config = config;
  local_config.store = prefixed(config.store, host_prefix + "/shm");
  local = share_memory_on_host(std::move(local), local_config);  // one host: shared memory, or alone
  return std::make_unique<HierarchicalEngine>(std::move(inner), std::move(local), std::move(among_leaders), hosts,
                                              config);
}

}  // namespace gradflow::distributed
