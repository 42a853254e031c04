// The job this process belongs to, resolved once from its environment (docs/cluster.md has the contract).
//
//   absl::StatusOr<JobInfo> job = resolve_job(current_environment());
//   if (!job.ok()) { std::cerr << job.status() << "\n"; return 2; }
//   // job->rank, job->world_size, job->local_rank, job->master_addr, job->gpu, ...
//
//   resolve_job({{"RANK", "1"}, {"WORLD_SIZE", "4"}})  // tests inject the map; nothing reads environ
//
// Sources, in this order (the first present wins): TF_CONFIG, OpenMPI (OMPI_COMM_WORLD_RANK), PMIx
// (PMIX_RANK), Slurm (SLURM_PROCID), torchrun-style (RANK), else a single process (rank 0 of 1).
// Inconsistent or malformed input is kInvalidArgument naming the variable and its value, e.g.
//   OMPI_COMM_WORLD_RANK="4": must be less than OMPI_COMM_WORLD_SIZE (4)
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace gradflow::cluster {

using EnvMap = std::map<std::string, std::string>;

// A snapshot of this process's environment: the one place in cluster/ that reads environ.
EnvMap current_environment();

// Where the job layout came from.
enum class JobSource { kTfConfig, kOpenMpi, kPmix, kSlurm, kTorchrun, kSingleProcess };

// "tf_config", "openmpi", "pmix", "slurm", "torchrun", "single_process".
std::string_view job_source_name(JobSource source);

// Master port when neither MASTER_PORT nor TF_CONFIG gives one (torchrun's default).
inline constexpr int kDefaultMasterPort = 29500;

// This task's place in a TF_CONFIG cluster.
struct TfRoles {
  std::string task_type;  // "chief", "worker", "ps" or "evaluator"
  int task_index = 0;
  // Task type -> its "host:port" addresses, as TF_CONFIG lists them.
  std::map<std::string, std::vector<std::string>> cluster;
};

struct JobInfo {
  JobSource source = JobSource::kSingleProcess;
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;  // rank among the processes on this node
  int local_size = 1;  // processes on this node
  int node_rank = 0;
  int num_nodes = 1;
  // The job's hosts, one per node in node order, where the source says (Slurm node list, TF_CONFIG task
  // hosts); empty where it does not (OpenMPI, PMIx, torchrun, single process).
  std::vector<std::string> hosts;
  std::string master_addr = "127.0.0.1";
  int master_port = kDefaultMasterPort;
  std::optional<TfRoles> roles;  // set for TF_CONFIG only
  // The CUDA device this rank should use: local_rank modulo the number of devices CUDA_VISIBLE_DEVICES
  // leaves visible (an index into that list, so 0 when Slurm binds one GPU per task); local_rank when the
  // variable is unset; -1 when it hides every device ("", "-1", "NoDevFiles").
  int gpu = -1;
  std::string job_token;  // GRADFLOW_JOB_TOKEN, empty when unset
  // Knobs for the job's collectives: GRADFLOW_DEBUG_COLLECTIVES=1 checks that every rank calls the same
  // collective (0 or unset: off); GRADFLOW_COLLECTIVE_TIMEOUT is the default timeout in seconds (>= 1).
  bool debug_collectives = false;
  std::optional<int> collective_timeout_s;
  // GRADFLOW_BACKEND (gfrun --backend): "mpi", "gloo", "nccl" or "auto" (also when unset).
  std::string backend = "auto";
  // GRADFLOW_MPI_THREAD_LEVEL: "serialized" (also when unset) or "single": MPI initialised at
  // MPI_THREAD_SINGLE, every op then run on the calling thread (no overlap; the lowest latency).
  bool mpi_thread_single = false;
  // GRADFLOW_GLOO_LOOP_SCHED: "batch" (also when unset) or "normal": the scheduling policy of Gloo's
  // event-loop thread (CommunicatorOptions::gloo_loop_batch).
  bool gloo_loop_batch = true;
  // GRADFLOW_SHARED_MEMORY: "1" (also when unset) or "0": all-reduces between the ranks of one host
  // through shared memory (CommunicatorOptions::shared_memory).
  bool shared_memory = true;
};

// The job described by env. Pure: reads nothing but env.
absl::StatusOr<JobInfo> resolve_job(const EnvMap& env);

}  // namespace gradflow::cluster
