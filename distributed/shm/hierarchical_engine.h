// A hierarchical all-reduce for jobs that span hosts with several ranks on some of them, as Horovod's
// hierarchical all-reduce and NCCL's trees do: the ranks of each host reduce through shared memory
// (shm_engine.h), the lowest rank of each host (its leader) reduces the hosts' sums with the other
// leaders over the backend, and each leader hands the result to its host's ranks through shared memory
// again. The network then carries one host's worth of data per host instead of one per rank.
//
// Every other op, and reductions shared memory has no kernel for, go to the engine it wraps, over all
// ranks. Built by share_memory_on_host when the ranks' hosts differ.
#pragma once

#include <memory>
#include <vector>

#include "distributed/comm/engine.h"
#include "distributed/shm/shm_engine.h"

namespace gradflow::distributed {

// `inner` made hierarchical, given each of its ranks' host (hosts_of_ranks); `inner` itself when every
// host has one rank, or when the groups could not meet (Gloo without config.store). Collective: it splits
// `inner` into one engine per host and one among the leaders.
std::unique_ptr<Engine> make_hierarchical_engine(std::unique_ptr<Engine> inner, const std::vector<int>& host_of_rank,
                                                 const SharedMemoryConfig& config);

}  // namespace gradflow::distributed
