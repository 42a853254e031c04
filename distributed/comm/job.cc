#include "distributed/comm/job.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/tensor/device.h"
#include "distributed/comm/routing_communicator.h"
#include "distributed/store/tcp_store.h"

namespace gradflow::distributed {

std::string local_address_toward(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), "9", &hints, &found) != 0 || found == nullptr) return "";
  std::string address;
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in local{};
  socklen_t len = sizeof(local);
  // connect() on a datagram socket sends nothing: it only makes the kernel pick the route and source.
  if (fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
    char text[INET_ADDRSTRLEN] = {};
    if (::inet_ntop(AF_INET, &local.sin_addr, text, sizeof(text)) != nullptr) address = text;
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(found);
  return address;
}

CommunicatorOptions communicator_options_for(const cluster::JobInfo& job, const JobCommunicatorOptions& options) {
  CommunicatorOptions o;
  o.backend = options.backend == Backend::kAuto ? parse_backend(job.backend) : options.backend;
  o.rank = job.rank;
  o.size = job.world_size;
  o.mpi_launched = job.source == cluster::JobSource::kOpenMpi || job.source == cluster::JobSource::kPmix;
  o.cuda_device = options.use_gpu ? job.gpu : -1;
  // Without NCCL in this build, without the GPU cluster/ assigned (a CUDA build on a machine without
  // one), or with more ranks on this node than GPUs (NCCL refuses two ranks on one GPU, and ranks past the
  // last GPU would be CPU jobs while the first ones chose NCCL: every rank must decide alike), kAuto is a
  // CPU job; GPU tensors then travel staged through host memory.
  const int gpus = cuda_device_count();
  if (o.backend == Backend::kAuto && (!backend_built(Backend::kNccl) || o.cuda_device >= gpus || job.local_size > gpus)) {
    o.cuda_device = -1;
  }
  if (job.collective_timeout_s) o.timeout = std::chrono::seconds(*job.collective_timeout_s);
  if (options.timeout) o.timeout = *options.timeout;
  o.debug = job.debug_collectives;
  o.mpi_thread_single = job.mpi_thread_single;
  o.gloo_loop_batch = job.gloo_loop_batch;
  o.shared_memory = job.shared_memory;
  o.address = local_address_toward(job.master_addr);  // Gloo: the address the others can reach us at
  return o;
}

std::unique_ptr<Communicator> communicator_for_job(const cluster::JobInfo& job, const JobCommunicatorOptions& options) {
  CommunicatorOptions o = communicator_options_for(job, options);
  bool automatic = o.backend == Backend::kAuto;
  Backend cpu_backend = o.mpi_launched && backend_built(Backend::kMpi) ? Backend::kMpi : Backend::kGloo;
  bool nccl = o.backend == Backend::kNccl || (automatic && o.cuda_device >= 0);
  Backend main_backend = automatic ? (nccl ? Backend::kNccl : cpu_backend) : o.backend;
  if (nccl || main_backend != Backend::kMpi) {  // everything but MPI alone needs the job's store
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
  if (!(automatic && nccl)) {
    o.backend = main_backend;
    return create_communicator(o);
  }
  // A GPU rank: CUDA tensors over NCCL, CPU tensors over MPI or Gloo.
  CommunicatorOptions cpu = o;
  cpu.backend = cpu_backend;
  cpu.cuda_device = -1;
  if (cpu_backend == Backend::kMpi) cpu.store = nullptr;  // MPI serves its own
  CommunicatorOptions cuda = o;
  cuda.backend = Backend::kNccl;
  std::unique_ptr<Communicator> cpu_comm = create_communicator(cpu);
  return std::make_unique<RoutingCommunicator>(std::move(cpu_comm), create_communicator(cuda));
}

}  // namespace gradflow::distributed
