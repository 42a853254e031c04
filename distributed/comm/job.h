// The communicator of this process's job, the way every entry point (examples, strategies, benchmarks)
// should get one: cluster/ has already read the environment; this picks the backend from how the job
// started, connects the job's store, and applies the job's knobs.
//
//   absl::StatusOr<cluster::JobInfo> job = cluster::resolve_job(cluster::current_environment());
//   std::unique_ptr<Communicator> comm = communicator_for_job(*job);
//
// Backend (kAuto): on a rank with a GPU (and NCCL built), a RoutingCommunicator: CUDA tensors over NCCL,
// CPU tensors over MPI or Gloo. For CPU tensors: MPI when mpirun (OpenMPI or PMIx) started the job and
// MPI is built, else Gloo. The store: MPI serves its own (see CommunicatorOptions);
// the others use a TcpStore that rank 0 serves at MASTER_ADDR:MASTER_PORT, entered with the job token.
// GRADFLOW_DEBUG_COLLECTIVES and GRADFLOW_COLLECTIVE_TIMEOUT (read by cluster/) set debug and timeout.
#pragma once

#include <memory>
#include <optional>

#include "cluster/environment.h"
#include "distributed/comm/communicator.h"

namespace gradflow::distributed {

struct JobCommunicatorOptions {
  Backend backend = Backend::kAuto;  // kAuto: the job's GRADFLOW_BACKEND (gfrun --backend), else automatic
  bool use_gpu = true;              // let kAuto pick NCCL when the rank has a GPU
  std::optional<Timeout> timeout;   // overrides the job's GRADFLOW_COLLECTIVE_TIMEOUT and the default
  Timeout connect_timeout = std::chrono::minutes(2);  // waiting for rank 0's store
};

// This host's address on the route to `host` (how the kernel would reach it), "" when there is none:
// the address Gloo should listen on so that every rank, whichever host it is on, can reach it.
std::string local_address_toward(const std::string& host);

// The options create_communicator() gets for this job (the store left unset).
CommunicatorOptions communicator_options_for(const cluster::JobInfo& job, const JobCommunicatorOptions& options);

// Connects the job's store and creates the communicator. Collective over the job's ranks. Throws
// CollectiveError naming the store's address when it cannot be reached or refuses the token.
std::unique_ptr<Communicator> communicator_for_job(const cluster::JobInfo& job,
                                                   const JobCommunicatorOptions& options = {});

}  // namespace gradflow::distributed
