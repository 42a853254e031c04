// One resolver per job source (environment.cc picks which runs). Each fills the layout fields of JobInfo
// (source, ranks, sizes, nodes, hosts and, where the source names one, master_addr/master_port);
// resolve_job then applies MASTER_ADDR/MASTER_PORT, the GPU and the job token.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "cluster/environment.h"

namespace gradflow::cluster::internal {

// TF_CONFIG's JSON (value is the variable's text).
absl::StatusOr<JobInfo> resolve_tf_config(const std::string& value);
// OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK/LOCAL_SIZE.
absl::StatusOr<JobInfo> resolve_open_mpi(const EnvMap& env);
// PMIX_RANK, sizes from PMIX_SIZE/PMIX_LOCAL_RANK/PMIX_LOCAL_SIZE or else from Slurm's variables.
absl::StatusOr<JobInfo> resolve_pmix(const EnvMap& env);
// SLURM_PROCID and friends.
absl::StatusOr<JobInfo> resolve_slurm(const EnvMap& env);
// RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE/NODE_RANK.
absl::StatusOr<JobInfo> resolve_torchrun(const EnvMap& env);

// Checks rank < world_size, local_rank < local_size <= world_size and node_rank < num_nodes; names holds
// the variables that gave rank, world_size, local_rank, local_size and node_rank, in that order.
absl::Status check_layout(const JobInfo& job, const std::string (&names)[5]);

}  // namespace gradflow::cluster::internal
