// resolve_job: picks the source in DESIGN.md's order, then applies MASTER_ADDR/MASTER_PORT, the GPU from
// CUDA_VISIBLE_DEVICES and GRADFLOW_JOB_TOKEN; current_environment: the one read of environ.
#include "cluster/environment.h"

#include <unistd.h>

#include "cluster/internal/env_values.h"
#include "cluster/internal/resolvers.h"

extern char** environ;

namespace gradflow::cluster {
namespace {

// The number of devices CUDA_VISIBLE_DEVICES leaves visible: entries up to the first negative ordinal,
// as the CUDA runtime counts them ("0,1", "GPU-<uuid>", "MIG-<uuid>"; "" and "-1" hide every device).
absl::StatusOr<int> visible_device_count(const std::string& value) {
  if (value.empty() || value == "NoDevFiles") return 0;
  int count = 0;
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    if (comma == std::string::npos) comma = value.size();
    std::string entry = value.substr(start, comma - start);
    if (entry.empty() || entry.find_first_of(" \t") != std::string::npos) {
      return internal::env_error("CUDA_VISIBLE_DEVICES", value, "empty or blank device entry");
    }
    if (entry.front() == '-') break;
    ++count;
    start = comma + 1;
  }
  return count;
}

absl::StatusOr<JobInfo> resolve_layout(const EnvMap& env) {
  auto tf_config = env.find("TF_CONFIG");
  if (tf_config != env.end() && !tf_config->second.empty()) return internal::resolve_tf_config(tf_config->second);
  if (env.count("OMPI_COMM_WORLD_RANK")) return internal::resolve_open_mpi(env);
  if (env.count("PMIX_RANK")) return internal::resolve_pmix(env);
  if (env.count("SLURM_PROCID")) return internal::resolve_slurm(env);
  if (env.count("RANK")) return internal::resolve_torchrun(env);
  if (env.count("WORLD_SIZE")) {
    return internal::env_error("WORLD_SIZE", env.at("WORLD_SIZE"), "is set but RANK is not");
  }
  return JobInfo{.source = JobSource::kSingleProcess};
}

}  // namespace

EnvMap current_environment() {
  EnvMap env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string text(*entry);
    size_t eq = text.find('=');
    if (eq == std::string::npos) continue;
    env.emplace(text.substr(0, eq), text.substr(eq + 1));
  }
  return env;
}

std::string_view job_source_name(JobSource source) {
  switch (source) {
    case JobSource::kTfConfig: return "tf_config";
    case JobSource::kOpenMpi: return "openmpi";
    case JobSource::kPmix: return "pmix";
    case JobSource::kSlurm: return "slurm";
    case JobSource::kTorchrun: return "torchrun";
    case JobSource::kSingleProcess: return "single_process";
  }
  return "unknown";
}

absl::StatusOr<JobInfo> resolve_job(const EnvMap& env) {
  absl::StatusOr<JobInfo> job = resolve_layout(env);
  if (!job.ok()) return job.status();
  if (std::optional<std::string> addr = internal::lookup(env, "MASTER_ADDR")) {
    if (addr->empty() || addr->find_first_of(" \t,") != std::string::npos) {
      return internal::env_error("MASTER_ADDR", *addr, "not a host name or address");
    }
    job->master_addr = *addr;
  }
  if (std::optional<std::string> port = internal::lookup(env, "MASTER_PORT")) {
    absl::StatusOr<int> parsed = internal::parse_port("MASTER_PORT", *port);
    if (!parsed.ok()) return parsed.status();
    job->master_port = *parsed;
  }
  job->gpu = job->local_rank;
  if (std::optional<std::string> visible = internal::lookup(env, "CUDA_VISIBLE_DEVICES")) {
    absl::StatusOr<int> count = visible_device_count(*visible);
    if (!count.ok()) return count.status();
    job->gpu = *count == 0 ? -1 : job->local_rank % *count;
  }
  job->job_token = internal::lookup(env, "GRADFLOW_JOB_TOKEN").value_or("");
  if (std::optional<std::string> debug = internal::lookup(env, "GRADFLOW_DEBUG_COLLECTIVES")) {
    if (*debug != "0" && *debug != "1") {
      return absl::InvalidArgumentError("GRADFLOW_DEBUG_COLLECTIVES=\"" + *debug + "\": must be 0 or 1");
    }
    job->debug_collectives = *debug == "1";
  }
  if (std::optional<std::string> timeout = internal::lookup(env, "GRADFLOW_COLLECTIVE_TIMEOUT")) {
    absl::StatusOr<int> seconds = internal::parse_int("GRADFLOW_COLLECTIVE_TIMEOUT", *timeout, 1);
    if (!seconds.ok()) return seconds.status();
    job->collective_timeout_s = *seconds;
  }
  if (std::optional<std::string> backend = internal::lookup(env, "GRADFLOW_BACKEND")) {
    if (*backend != "mpi" && *backend != "gloo" && *backend != "nccl" && *backend != "auto") {
      return absl::InvalidArgumentError("GRADFLOW_BACKEND=\"" + *backend + "\": must be mpi, gloo, nccl or auto");
    }
    job->backend = *backend;
  }
  if (std::optional<std::string> level = internal::lookup(env, "GRADFLOW_MPI_THREAD_LEVEL")) {
    if (*level != "single" && *level != "serialized") {
      return absl::InvalidArgumentError("GRADFLOW_MPI_THREAD_LEVEL=\"" + *level + "\": must be single or serialized");
    }
    job->mpi_thread_single = *level == "single";
  }
  if (std::optional<std::string> policy = internal::lookup(env, "GRADFLOW_GLOO_LOOP_SCHED")) {
    if (*policy != "batch" && *policy != "normal") {
      return absl::InvalidArgumentError("GRADFLOW_GLOO_LOOP_SCHED=\"" + *policy + "\": must be batch or normal");
    }
    job->gloo_loop_batch = *policy == "batch";
  }
  if (std::optional<std::string> shared = internal::lookup(env, "GRADFLOW_SHARED_MEMORY")) {
    if (*shared != "0" && *shared != "1") {
      return absl::InvalidArgumentError("GRADFLOW_SHARED_MEMORY=\"" + *shared + "\": must be 0 or 1");
    }
    job->shared_memory = *shared == "1";
  }
  return job;
}

}  // namespace gradflow::cluster
