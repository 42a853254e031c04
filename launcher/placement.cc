#include "launcher/placement.h"

#include "cluster/hostlist.h"

#include <unistd.h>

#include <algorithm>
#include <climits>

namespace gradflow::launcher {

absl::StatusOr<std::vector<cluster::HostSlots>> hosts_from_options(const LaunchOptions& options, int local_cores) {
  std::vector<cluster::HostSlots> hosts;
  auto add = [&](const std::vector<cluster::HostSlots>& more) {
    for (const cluster::HostSlots& h : more) {
      auto same = std::find_if(hosts.begin(), hosts.end(), [&](const cluster::HostSlots& x) { return x.host == h.host; });
      if (same == hosts.end()) {
        hosts.push_back(h);
      } else {
        same->slots += h.slots;
      }
    }
  };
  for (const std::string& list : options.host_lists) {
    absl::StatusOr<std::vector<cluster::HostSlots>> parsed = cluster::parse_host_list(list);
    if (!parsed.ok()) return parsed.status();
    add(*parsed);
  }
  if (options.hostfile) {
    absl::StatusOr<std::vector<cluster::HostSlots>> parsed = cluster::read_hostfile(*options.hostfile);
    if (!parsed.ok()) return parsed.status();
    add(*parsed);
  }
  if (hosts.empty()) hosts.push_back({"localhost", std::max(local_cores, 1), std::nullopt});
  return hosts;
}

absl::StatusOr<std::optional<std::vector<cluster::HostSlots>>> slurm_allocation_hosts(
    const std::map<std::string, std::string>& env) {
  auto nodelist = env.find("SLURM_JOB_NODELIST");
  if (nodelist == env.end()) return std::nullopt;
  absl::StatusOr<std::vector<std::string>> names = cluster::expand_hostlist(nodelist->second, "SLURM_JOB_NODELIST");
  if (!names.ok()) return names.status();
  std::vector<int> slots(names->size(), 1);
  for (const char* name : {"SLURM_TASKS_PER_NODE", "SLURM_JOB_CPUS_PER_NODE"}) {
    auto value = env.find(name);
    if (value == env.end()) continue;
    absl::StatusOr<std::vector<int>> counts = cluster::expand_tasks_per_node(value->second, name);
    if (!counts.ok()) return counts.status();
    if (counts->size() != names->size()) {
      return absl::InvalidArgumentError(std::string("gfrun: ") + name + "=\"" + value->second + "\" gives " +
                                        std::to_string(counts->size()) + " counts for " +
                                        std::to_string(names->size()) + " nodes in SLURM_JOB_NODELIST");
    }
    slots = *counts;
    break;
  }
  std::vector<cluster::HostSlots> hosts;
  for (size_t i = 0; i < names->size(); ++i) hosts.push_back({(*names)[i], slots[i], std::nullopt});
  return std::optional(hosts);
}

absl::StatusOr<Placement> place_ranks(const LaunchOptions& options, const std::vector<cluster::HostSlots>& hosts) {
  int total_slots = 0;
  for (const cluster::HostSlots& h : hosts) total_slots += h.slots;
  std::vector<int> per_host(hosts.size(), 0);
  auto limit = [&](size_t h) {
    int hard = hosts[h].max_slots.value_or(INT_MAX);
    return options.oversubscribe ? hard : std::min(hard, hosts[h].slots);
  };
  int np = options.np.value_or(options.per_node ? *options.per_node * static_cast<int>(hosts.size()) : total_slots);
  if (options.per_node) {
    if (np > *options.per_node * static_cast<int>(hosts.size())) {
      return absl::InvalidArgumentError("gfrun: -np " + std::to_string(np) + " is more than -N " +
                                        std::to_string(*options.per_node) + " ranks on each of " +
                                        std::to_string(hosts.size()) + " hosts");
    }
    for (int r = 0; r < np; ++r) per_host[r / *options.per_node]++;
  } else {
    // Fill slots host by host; with --oversubscribe, extra ranks go round the hosts one at a time.
    int left = np;
    for (size_t h = 0; h < hosts.size() && left > 0; ++h) {
      per_host[h] = std::min(left, hosts[h].slots);
      left -= per_host[h];
    }
    while (left > 0 && options.oversubscribe) {
      bool placed = false;
      for (size_t h = 0; h < hosts.size() && left > 0; ++h) {
        if (per_host[h] < limit(h)) {
          per_host[h]++;
          left--;
          placed = true;
        }
      }
      if (!placed) break;
    }
    if (left > 0) {
      return absl::InvalidArgumentError(
          "gfrun: not enough slots for -np " + std::to_string(np) + ": the hosts have " + std::to_string(total_slots) +
          (options.oversubscribe ? " slots and their max_slots allow no more" : " slots (pass --oversubscribe to run more ranks than slots)"));
    }
  }
  for (size_t h = 0; h < hosts.size(); ++h) {
    if (per_host[h] > limit(h)) {
      return absl::InvalidArgumentError("gfrun: " + std::to_string(per_host[h]) + " ranks on " + hosts[h].host +
                                        " but it has " + std::to_string(hosts[h].slots) + " slots" +
                                        (options.oversubscribe ? " (max_slots " + std::to_string(limit(h)) + ")"
                                                               : " (pass --oversubscribe)"));
    }
  }
  Placement p;
  int rank = 0;
  for (size_t h = 0; h < hosts.size(); ++h) {
    if (per_host[h] == 0) continue;
    int node = static_cast<int>(p.nodes.size());
    p.nodes.push_back(hosts[h].host);
    for (int l = 0; l < per_host[h]; ++l) p.ranks.push_back({rank++, hosts[h].host, node, l, per_host[h]});
  }
  return p;
}

bool is_local_host(const std::string& host) {
  if (host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0) return true;
  char name[256] = {};
  return ::gethostname(name, sizeof(name) - 1) == 0 && host == name;
}

}  // namespace gradflow::launcher
