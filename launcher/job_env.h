// The environment of each rank gfrun starts (docs/launcher.md): gfrun's own environment, minus the
// variables by which another launcher would claim the rank (OMPI_COMM_WORLD_*, PMIX_RANK, SLURM_PROCID,
// TF_CONFIG: gfrun may itself run inside mpirun, srun or an sbatch script), plus DESIGN.md's contract
// RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE NODE_RANK MASTER_ADDR MASTER_PORT GRADFLOW_JOB_TOKEN,
// GRADFLOW_RESTART_COUNT and GRADFLOW_BACKEND, and the -x exports.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "launcher/placement.h"

namespace gradflow::launcher {

struct JobIdentity {
  std::string master_addr;
  int master_port = 0;
  std::string token;
  int restart_count = 0;
  std::string backend = "auto";
};

using Environment = std::map<std::string, std::string>;

// rank's environment, as "NAME=value" strings. kInvalidArgument for an -x naming an unset variable.
absl::StatusOr<std::vector<std::string>> rank_environment(const Environment& base, const std::vector<std::string>& exports,
                                                          int world_size, const RankPlace& rank, const JobIdentity& job);

// The -x exports with every bare VAR given its value from base ("VAR=value"), for other hosts.
absl::StatusOr<std::vector<std::string>> resolve_exports(const Environment& base, const std::vector<std::string>& exports);

// gfrun's environment without the variables of other launchers.
Environment without_other_launchers(Environment env);

// A random 128-bit token in hex.
std::string new_job_token();

// A TCP port free on this machine now (the kernel's pick).
int free_local_port();

}  // namespace gradflow::launcher
