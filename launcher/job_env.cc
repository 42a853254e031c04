#include "launcher/job_env.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <random>

namespace gradflow::launcher {

Environment without_other_launchers(Environment env) {
  for (auto it = env.begin(); it != env.end();) {
    const std::string& name = it->first;
    bool other = name.rfind("OMPI_COMM_WORLD_", 0) == 0 || name == "PMIX_RANK" || name == "SLURM_PROCID" ||
                 name == "SLURM_LOCALID" || name == "SLURM_NODEID" || name == "TF_CONFIG";
    it = other ? env.erase(it) : std::next(it);
  }
  return env;
}

absl::StatusOr<std::vector<std::string>> resolve_exports(const Environment& base, const std::vector<std::string>& exports) {
  std::vector<std::string> resolved;
  for (const std::string& x : exports) {
    if (x.find('=') != std::string::npos) {
      resolved.push_back(x);
    } else if (auto it = base.find(x); it != base.end()) {
      resolved.push_back(x + "=" + it->second);
    } else {
      return absl::InvalidArgumentError("gfrun: -x " + x + ": no such variable in gfrun's environment");
    }
  }
  return resolved;
}

absl::StatusOr<std::vector<std::string>> rank_environment(const Environment& base, const std::vector<std::string>& exports,
                                                          int world_size, const RankPlace& rank, const JobIdentity& job) {
  Environment env = without_other_launchers(base);
  for (const std::string& x : exports) {
    size_t eq = x.find('=');
    if (eq != std::string::npos) {
      env[x.substr(0, eq)] = x.substr(eq + 1);
    } else if (!base.count(x)) {
      return absl::InvalidArgumentError("gfrun: -x " + x + ": no such variable in gfrun's environment");
    }
  }
  env["RANK"] = std::to_string(rank.rank);
  env["WORLD_SIZE"] = std::to_string(world_size);
  env["LOCAL_RANK"] = std::to_string(rank.local_rank);
  env["LOCAL_WORLD_SIZE"] = std::to_string(rank.local_size);
  env["NODE_RANK"] = std::to_string(rank.node_rank);
  env["MASTER_ADDR"] = job.master_addr;
  env["MASTER_PORT"] = std::to_string(job.master_port);
  env["GRADFLOW_JOB_TOKEN"] = job.token;
  env["GRADFLOW_RESTART_COUNT"] = std::to_string(job.restart_count);
  env["GRADFLOW_BACKEND"] = job.backend;
  std::vector<std::string> out;
  for (const auto& [name, value] : env) out.push_back(name + "=" + value);
  return out;
}

std::string new_job_token() {
  std::random_device random;
  char text[33];
  std::snprintf(text, sizeof(text), "%08x%08x%08x%08x", random(), random(), random(), random());
  return text;
}

int free_local_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace gradflow::launcher
