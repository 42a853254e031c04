#include "distributed/shm/hierarchical_engine.h"

#include <algorithm>
#include <chrono>

#include "distributed/comm/reduce_functions.h"
#include "distributed/shm/wrapping_engine.h"
#include "distributed/store/prefix_store.h"

namespace gradflow::distributed {
namespace {

using shm_internal::Clock;
using shm_internal::deadline_after;

Timeout left(Clock::time_point deadline) {
  return std::max(Timeout(1), std::chrono::duration_cast<Timeout>(deadline - Clock::now()));
}

std::shared_ptr<Store> prefixed(const std::shared_ptr<Store>& store, const std::string& prefix) {
  return store ? std::make_shared<PrefixStore>(prefix, store) : nullptr;
}

class HierarchicalEngine final : public shm_internal::WrappingEngine {
 public:
  HierarchicalEngine(std::unique_ptr<Engine> inner, std::unique_ptr<Engine> local, std::unique_ptr<Engine> leaders,
                     int hosts, SharedMemoryConfig config)
      : WrappingEngine(std::move(inner), std::move(config)),
        local_(std::move(local)),
        leaders_(std::move(leaders)),
        hosts_(hosts) {}

  std::string transport() const override {
    return str_cat(inner_->transport(), " + shared memory within each of ", hosts_, " hosts");
  }

  // The host's sum on every rank of the host, the leaders' sum of those, then the leader's result to its
  // host. Each stage gets what is left of the op's timeout.
  void all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, Timeout timeout) override {
    if (reduce_function(dtype, op) == nullptr) return inner_->all_reduce(in, out, count, dtype, op, timeout);
    const Clock::time_point deadline = deadline_after(timeout);
    local_->all_reduce(in, out, count, dtype, op, left(deadline));
    if (leaders_) leaders_->all_reduce(out, out, count, dtype, op, left(deadline));
    local_->broadcast(out, count, dtype, 0, left(deadline));
  }

  void interrupt() override {
    inner_->interrupt();
    local_->interrupt();
    if (leaders_) leaders_->interrupt();
  }

 private:
  std::unique_ptr<Engine> local_;    // this host's ranks, through shared memory
  std::unique_ptr<Engine> leaders_;  // one rank per host; null on the others
  int hosts_;
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
