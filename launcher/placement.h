// Where each rank of a gfrun job runs: hosts and slots from -H/--hostfile (or this machine), then
// mpirun's placement rules: fill each host's slots in order (by slot, the default) or N per host
// (-N / --map-by ppr:N:node); more ranks than slots only with --oversubscribe, never beyond max_slots.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cluster/hostfile.h"
#include "launcher/options.h"

namespace gradflow::launcher {

struct RankPlace {
  int rank = 0;
  std::string host;
  int node_rank = 0;   // index of host among the hosts that got ranks
  int local_rank = 0;  // index among the ranks on host
  int local_size = 1;  // ranks on host
};

struct Placement {
  std::vector<RankPlace> ranks;    // by rank; ranks on one host are contiguous
  std::vector<std::string> nodes;  // hosts that got ranks, by node rank
};

// The hosts the options name (-H lists, then the hostfile, a host named again adding its slots), or
// this machine ("localhost") with `local_cores` slots when they name none.
absl::StatusOr<std::vector<cluster::HostSlots>> hosts_from_options(const LaunchOptions& options, int local_cores);

// The hosts of the Slurm allocation gfrun runs in (SLURM_JOB_NODELIST, slots from SLURM_TASKS_PER_NODE,
// else SLURM_JOB_CPUS_PER_NODE), or nullopt outside one. Errors name the variable and value.
absl::StatusOr<std::optional<std::vector<cluster::HostSlots>>> slurm_allocation_hosts(
    const std::map<std::string, std::string>& env);

// Places options.np ranks (default: every slot, or per_node on every host) on hosts. Errors say how many
// slots there are and what to pass (--oversubscribe, fewer ranks).
absl::StatusOr<Placement> place_ranks(const LaunchOptions& options, const std::vector<cluster::HostSlots>& hosts);

// Whether host names this machine (localhost, 127.x, ::1, or its hostname).
bool is_local_host(const std::string& host);

}  // namespace gradflow::launcher
