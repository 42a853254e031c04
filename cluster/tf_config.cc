// TF_CONFIG: {"cluster": {"chief": ["h0:2222"], "worker": ["h1:2222", ...], "ps": [...]},
//             "task": {"type": "worker", "index": 0}}
// Ranks run over chief, then workers, then ps tasks; an evaluator is a job of its own (rank 0 of 1). Nodes
// are the distinct hosts in rank order; master is rank 0's host and port.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "cluster/internal/env_values.h"
#include "cluster/internal/resolvers.h"

namespace gradflow::cluster::internal {
namespace {

constexpr const char* kRankOrder[] = {"chief", "worker", "ps"};

bool known_type(const std::string& type) {
  return type == "chief" || type == "worker" || type == "ps" || type == "evaluator";
}

struct Address {
  std::string host;
  int port = 0;
};

// "host:port" or "[v6addr]:port".
absl::StatusOr<Address> split_address(const std::string& value, const std::string& address,
                                      const std::string& where) {
  size_t colon = address.rfind(':');
  std::string host = colon == std::string::npos ? "" : address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) return env_error("TF_CONFIG", value, where + " \"" + address + "\" is not host:port");
  absl::StatusOr<int> port = parse_port("TF_CONFIG", address.substr(colon + 1));
  if (!port.ok()) return env_error("TF_CONFIG", value, where + " \"" + address + "\" has a bad port");
  return Address{host, *port};
}

// Reads the cluster map and task into roles, checking types, shapes and the index.
absl::Status parse_roles(const std::string& value, TfRoles& roles) {
  nlohmann::json json = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return env_error("TF_CONFIG", value, "not valid JSON");
  if (!json.is_object() || !json.contains("cluster") || !json["cluster"].is_object()) {
    return env_error("TF_CONFIG", value, "has no \"cluster\" object");
  }
  for (const auto& [type, tasks] : json["cluster"].items()) {
    if (!known_type(type)) {
      return env_error("TF_CONFIG", value,
                       "unknown task type \"" + type + "\" in cluster (expected chief, worker, ps or evaluator)");
    }
    if (!tasks.is_array()) return env_error("TF_CONFIG", value, "cluster." + type + " is not a list");
    for (const auto& address : tasks) {
      if (!address.is_string()) return env_error("TF_CONFIG", value, "cluster." + type + " holds a non-string");
      roles.cluster[type].push_back(address.get<std::string>());
    }
  }
  if (roles.cluster.count("chief") && roles.cluster["chief"].size() > 1) {
    return env_error("TF_CONFIG", value, "cluster.chief lists more than one task");
  }
  if (!json.contains("task") || !json["task"].is_object()) {
    return env_error("TF_CONFIG", value, "has no \"task\" object");
  }
  const nlohmann::json& task = json["task"];
  if (!task.contains("type") || !task["type"].is_string()) {
    return env_error("TF_CONFIG", value, "task has no string \"type\"");
  }
  roles.task_type = task["type"].get<std::string>();
  if (!known_type(roles.task_type)) {
    return env_error("TF_CONFIG", value,
                     "unknown task type \"" + roles.task_type + "\" (expected chief, worker, ps or evaluator)");
  }
  if (task.contains("index") && !task["index"].is_number_integer()) {
    return env_error("TF_CONFIG", value, "task index is not an integer");
  }
  long long index = task.value("index", 0LL);
  size_t count = roles.cluster.count(roles.task_type) ? roles.cluster[roles.task_type].size() : 0;
  bool lone_evaluator = roles.task_type == "evaluator" && count == 0;
  if (index < 0 || (!lone_evaluator && index >= static_cast<long long>(count))) {
    return env_error("TF_CONFIG", value,
                     "task index " + std::to_string(index) + " is out of range: cluster." + roles.task_type + " has " +
                         std::to_string(count) + " task(s)");
  }
  roles.task_index = static_cast<int>(index);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<JobInfo> resolve_tf_config(const std::string& value) {
  TfRoles roles;
  if (absl::Status s = parse_roles(value, roles); !s.ok()) return s;

  // The world's tasks in rank order ("type", index, address); an evaluator stands alone.
  std::vector<std::pair<std::string, Address>> world;
  auto add = [&](const std::string& type, size_t i) -> absl::Status {
    std::string where = "cluster." + type + "[" + std::to_string(i) + "]";
    absl::StatusOr<Address> a = split_address(value, roles.cluster[type][i], where);
    if (!a.ok()) return a.status();
    world.emplace_back(type + "/" + std::to_string(i), *a);
    return absl::OkStatus();
  };
  if (roles.task_type == "evaluator") {
    if (roles.cluster.count("evaluator")) {
      if (absl::Status s = add("evaluator", roles.task_index); !s.ok()) return s;
    }
  } else {
    for (const char* type : kRankOrder) {
      if (!roles.cluster.count(type)) continue;
      for (size_t i = 0; i < roles.cluster[type].size(); ++i) {
        if (absl::Status s = add(type, i); !s.ok()) return s;
      }
    }
  }

  JobInfo job{.source = JobSource::kTfConfig};
  std::string me = roles.task_type + "/" + std::to_string(roles.task_index);
  std::string my_host;
  for (size_t r = 0; r < world.size(); ++r) {
    const auto& [name, address] = world[r];
    if (std::find(job.hosts.begin(), job.hosts.end(), address.host) == job.hosts.end()) {
      job.hosts.push_back(address.host);
    }
    if (name == me) {
      job.rank = static_cast<int>(r);
      my_host = address.host;
    }
  }
  if (!world.empty()) {
    job.world_size = static_cast<int>(world.size());
    job.num_nodes = static_cast<int>(job.hosts.size());
    job.node_rank = static_cast<int>(std::find(job.hosts.begin(), job.hosts.end(), my_host) - job.hosts.begin());
    job.local_size = 0;
    for (size_t r = 0; r < world.size(); ++r) {
      if (world[r].second.host != my_host) continue;
      if (static_cast<int>(r) < job.rank) ++job.local_rank;
      ++job.local_size;
    }
    job.master_addr = world.front().second.host;
    job.master_port = world.front().second.port;
  }
  job.roles = std::move(roles);
  return job;
}

}  // namespace gradflow::cluster::internal
