// Resolvers for the environments launchers set: OpenMPI's mpirun, PMIx servers, Slurm's srun and
// torchrun-style (gfrun sets this one). See docs/cluster.md for the variables each reads.
#include <numeric>

#include "cluster/hostlist.h"
#include "cluster/internal/env_values.h"
#include "cluster/internal/resolvers.h"

namespace gradflow::cluster::internal {
namespace {

// The first of names that is set, or "" when none is.
std::string first_set(const EnvMap& env, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (env.count(name)) return name;
  }
  return "";
}

// Node rank and count for launchers that place ranks contiguously by node with equal local sizes
// (mpirun's default by-slot mapping, torchrun): node = (rank - local_rank) / local_size.
void derive_nodes(JobInfo& job) {
  job.node_rank = (job.rank - job.local_rank) / job.local_size;
  job.num_nodes = (job.world_size + job.local_size - 1) / job.local_size;
}

}  // namespace

absl::Status check_layout(const JobInfo& job, const std::string (&names)[5]) {
  if (absl::Status s = check_less(names[0], job.rank, names[1], job.world_size); !s.ok()) return s;
  if (absl::Status s = check_less(names[2], job.local_rank, names[3], job.local_size); !s.ok()) return s;
  if (job.local_size > job.world_size) {
    return env_error(names[3], std::to_string(job.local_size),
                     "more than " + names[1] + " (" + std::to_string(job.world_size) + ")");
  }
  return check_less(names[4], job.node_rank, "the number of nodes", job.num_nodes);
}

absl::StatusOr<JobInfo> resolve_open_mpi(const EnvMap& env) {
  const std::string names[5] = {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                                "OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"};
  JobInfo job{.source = JobSource::kOpenMpi};
  const char* why = "OMPI_COMM_WORLD_RANK is set";
  absl::StatusOr<int> rank = required_int(env, names[0], why);
  absl::StatusOr<int> size = required_int(env, names[1], why, 1);
  absl::StatusOr<int> local_rank = required_int(env, names[2], why);
  absl::StatusOr<int> local_size = required_int(env, names[3], why, 1);
  for (const absl::StatusOr<int>* v : {&rank, &size, &local_rank, &local_size}) {
    if (!v->ok()) return v->status();
  }
  job.rank = *rank;
  job.world_size = *size;
  job.local_rank = *local_rank;
  job.local_size = *local_size;
  if (absl::Status s = check_layout(job, names); !s.ok()) return s;
  derive_nodes(job);
  return job;
}

absl::StatusOr<JobInfo> resolve_slurm(const EnvMap& env) {
  JobInfo job{.source = JobSource::kSlurm};
  std::string size_name = first_set(env, {"SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS"});
  if (size_name.empty()) {
    return absl::InvalidArgumentError("SLURM_PROCID is set but none of SLURM_STEP_NUM_TASKS, SLURM_NTASKS, "
                                      "SLURM_NPROCS is: cannot tell the world size");
  }
  const std::string names[5] = {"SLURM_PROCID", size_name, "SLURM_LOCALID", "the tasks on this node",
                                "SLURM_NODEID"};
  absl::StatusOr<int> rank = required_int(env, names[0], "");
  absl::StatusOr<int> size = required_int(env, size_name, "", 1);
  absl::StatusOr<int> local_rank = int_or(env, "SLURM_LOCALID", 0);
  absl::StatusOr<int> node_rank = int_or(env, "SLURM_NODEID", 0);
  for (const absl::StatusOr<int>* v : {&rank, &size, &local_rank, &node_rank}) {
    if (!v->ok()) return v->status();
  }
  job.rank = *rank;
  job.world_size = *size;
  job.local_rank = *local_rank;
  job.node_rank = *node_rank;

  std::string list_name = first_set(env, {"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"});
  if (!list_name.empty()) {
    absl::StatusOr<std::vector<std::string>> hosts = expand_hostlist(env.at(list_name), list_name);
    if (!hosts.ok()) return hosts.status();
    job.hosts = std::move(*hosts);
  }
  std::string tasks_name = first_set(env, {"SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"});
  std::vector<int> tasks;
  if (!tasks_name.empty()) {
    absl::StatusOr<std::vector<int>> parsed = expand_tasks_per_node(env.at(tasks_name), tasks_name);
    if (!parsed.ok()) return parsed.status();
    tasks = std::move(*parsed);
    if (!job.hosts.empty() && tasks.size() != job.hosts.size()) {
      return env_error(tasks_name, env.at(tasks_name),
                       "lists " + std::to_string(tasks.size()) + " nodes but " + list_name + "=\"" +
                           env.at(list_name) + "\" has " + std::to_string(job.hosts.size()));
    }
    int total = std::accumulate(tasks.begin(), tasks.end(), 0);
    if (total != job.world_size) {
      return env_error(tasks_name, env.at(tasks_name),
                       "adds up to " + std::to_string(total) + " tasks but " + size_name + " is " +
                           std::to_string(job.world_size));
    }
  }
  if (!job.hosts.empty()) {
    job.num_nodes = static_cast<int>(job.hosts.size());
  } else if (!tasks.empty()) {
    job.num_nodes = static_cast<int>(tasks.size());
  } else {
    absl::StatusOr<int> nodes = int_or(env, first_set(env, {"SLURM_STEP_NUM_NODES", "SLURM_NNODES"}), 1, 1);
    if (!nodes.ok()) return nodes.status();
    job.num_nodes = *nodes;
  }
  if (absl::Status s = check_less("SLURM_NODEID", job.node_rank, "the number of nodes", job.num_nodes);
      !s.ok()) {
    return s;
  }
  if (!tasks.empty()) {
    job.local_size = tasks[job.node_rank];
  } else if (job.num_nodes == 1) {
    job.local_size = job.world_size;
  } else {
    return absl::InvalidArgumentError("neither SLURM_STEP_TASKS_PER_NODE nor SLURM_TASKS_PER_NODE is set and "
                                      "the job spans " + std::to_string(job.num_nodes) +
                                      " nodes: cannot tell the tasks on this node");
  }
  if (job.local_size == 0) {
    return env_error(tasks_name, env.at(tasks_name),
                     "gives no tasks to node " + std::to_string(job.node_rank) + " (SLURM_NODEID)");
  }
  if (absl::Status s = check_layout(job, names); !s.ok()) return s;
  if (!job.hosts.empty()) job.master_addr = job.hosts.front();
  return job;
}

absl::StatusOr<JobInfo> resolve_pmix(const EnvMap& env) {
  absl::StatusOr<int> rank = required_int(env, "PMIX_RANK", "");
  if (!rank.ok()) return rank.status();
  JobInfo job;
  if (env.count("PMIX_SIZE")) {
    const std::string names[5] = {"PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE",
                                  "PMIX_LOCAL_RANK"};
    absl::StatusOr<int> size = required_int(env, "PMIX_SIZE", "", 1);
    if (!size.ok()) return size.status();
    absl::StatusOr<int> local_size = int_or(env, "PMIX_LOCAL_SIZE", *size, 1);
    if (!local_size.ok()) return local_size.status();
    absl::StatusOr<int> local_rank = int_or(env, "PMIX_LOCAL_RANK", *rank % *local_size);
    if (!local_rank.ok()) return local_rank.status();
    job = JobInfo{.rank = *rank, .world_size = *size, .local_rank = *local_rank, .local_size = *local_size};
    if (absl::Status s = check_layout(job, names); !s.ok()) return s;
    derive_nodes(job);
  } else if (env.count("SLURM_PROCID")) {
    absl::StatusOr<JobInfo> slurm = resolve_slurm(env);
    if (!slurm.ok()) return slurm.status();
    if (slurm->rank != *rank) {
      return env_error("PMIX_RANK", env.at("PMIX_RANK"),
                       "differs from SLURM_PROCID=\"" + env.at("SLURM_PROCID") + "\"");
    }
    job = std::move(*slurm);
  } else {
    return absl::InvalidArgumentError("PMIX_RANK is set but neither PMIX_SIZE nor Slurm's SLURM_PROCID/SLURM_NTASKS "
                                      "is: cannot tell the world size");
  }
  job.source = JobSource::kPmix;
  return job;
}

absl::StatusOr<JobInfo> resolve_torchrun(const EnvMap& env) {
  const std::string names[5] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK"};
  absl::StatusOr<int> rank = required_int(env, "RANK", "");
  absl::StatusOr<int> size = required_int(env, "WORLD_SIZE", "RANK is set", 1);
  if (!rank.ok()) return rank.status();
  if (!size.ok()) return size.status();
  // Without LOCAL_WORLD_SIZE every rank is taken to share one node.
  absl::StatusOr<int> local_size = int_or(env, "LOCAL_WORLD_SIZE", *size, 1);
  if (!local_size.ok()) return local_size.status();
  absl::StatusOr<int> local_rank = int_or(env, "LOCAL_RANK", *rank % *local_size);
  if (!local_rank.ok()) return local_rank.status();
  JobInfo job{.source = JobSource::kTorchrun, .rank = *rank, .world_size = *size, .local_rank = *local_rank,
              .local_size = *local_size};
  derive_nodes(job);
  std::string node_name = first_set(env, {"NODE_RANK", "GROUP_RANK"});
  if (!node_name.empty()) {
    absl::StatusOr<int> node_rank = parse_int(node_name, env.at(node_name));
    if (!node_rank.ok()) return node_rank.status();
    job.node_rank = *node_rank;
  }
  const std::string checked[5] = {names[0], names[1], names[2], names[3], node_name.empty() ? "RANK" : node_name};
  if (absl::Status s = check_layout(job, checked); !s.ok()) return s;
  return job;
}

}  // namespace gradflow::cluster::internal
