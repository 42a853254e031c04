#include "distributed/comm/job.h"

#include "distributed/store/tcp_store.h"

namespace gradflow::distributed {

CommunicatorOptions communicator_options_for(const cluster::JobInfo& job, const JobCommunicatorOptions& options) {
  CommunicatorOptions o;
  o.backend = options.backend;
  o.rank = job.rank;
  o.size = job.world_size;
  o.mpi_launched = job.source == cluster::JobSource::kOpenMpi || job.source == cluster::JobSource::kPmix;
  o.cuda_device = options.use_gpu ? job.gpu : -1;
  if (o.backend == Backend::kAuto && !backend_built(Backend::kNccl)) o.cuda_device = -1;
  if (job.collective_timeout_s) o.timeout = std::chrono::seconds(*job.collective_timeout_s);
  if (options.timeout) o.timeout = *options.timeout;
  o.debug = job.debug_collectives;
  return o;
}

std::unique_ptr<Communicator> communicator_for_job(const cluster::JobInfo& job, const JobCommunicatorOptions& options) {
  CommunicatorOptions o = communicator_options_for(job, options);
  bool mpi = o.backend == Backend::kMpi ||
             (o.backend == Backend::kAuto && o.cuda_device < 0 && o.mpi_launched && backend_built(Backend::kMpi));
  if (!mpi) {
    absl::StatusOr<std::unique_ptr<TcpStore>> store = TcpStore::create({.host = job.master_addr,
                                                                        .port = static_cast<uint16_t>(job.master_port),
                                                                        .is_server = job.rank == 0,
                                                                        .job_token = job.job_token,
                                                                        .timeout = o.timeout,
                                                                        .connect_timeout = options.connect_timeout});
    if (!store.ok()) {
      throw CollectiveError(CollectiveFailure::kEngine,
                            str_cat("rank ", job.rank, ": the job's store at ", job.master_addr, ":", job.master_port,
                                    ": ", store.status().ToString()));
    }
    o.store = std::move(*store);
  }
  return create_communicator(o);
}

}  // namespace gradflow::distributed
