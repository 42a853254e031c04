// create_communicator(): picks the backend, gives the communicator its own keys in the store, and builds
// the engine (which is the rendezvous).
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <random>
#include <set>

#include "distributed/comm/communicator.h"
#include "distributed/comm/engine.h"
#include "distributed/comm/engine_communicator.h"
#include "distributed/comm/local_device_group.h"
#include "distributed/shm/shm_engine.h"
#include "distributed/store/prefix_store.h"
#include "distributed/store/tcp_store.h"

namespace gradflow::distributed {

std::string_view backend_name(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return "auto";
    case Backend::kMpi: return "mpi";
    case Backend::kGloo: return "gloo";
    case Backend::kNccl: return "nccl";
  }
  return "?";
}

std::string_view reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMin: return "min";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kProd: return "prod";
  }
  return "?";
}

Backend parse_backend(std::string_view name) {
  for (Backend b : {Backend::kAuto, Backend::kMpi, Backend::kGloo, Backend::kNccl}) {
    if (name == backend_name(b)) return b;
  }
  throw ValueError(str_cat("unknown collective backend \"", name, "\" (expected mpi, gloo, nccl or auto)"));
}

bool backend_built(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return true;
#ifdef GRADFLOW_HAVE_MPI
    case Backend::kMpi: return true;
#endif
#ifdef GRADFLOW_HAVE_GLOO
    case Backend::kGloo: return true;
#endif
#ifdef GRADFLOW_HAVE_NCCL
    case Backend::kNccl: return true;
#endif
    default: return false;
  }
}

namespace {

Backend resolve(const CommunicatorOptions& options) {
  if (options.backend != Backend::kAuto) return options.backend;
  if (options.cuda_device >= 0 && backend_built(Backend::kNccl)) return Backend::kNccl;
  if (options.mpi_launched && backend_built(Backend::kMpi)) return Backend::kMpi;
  return Backend::kGloo;
}

std::unique_ptr<Engine> make_engine(Backend backend, const EngineConfig& config) {
  switch (backend) {
#ifdef GRADFLOW_HAVE_MPI
    case Backend::kMpi: return make_mpi_engine(config);
#endif
#ifdef GRADFLOW_HAVE_GLOO
    case Backend::kGloo: return make_gloo_engine(config);
#endif
#ifdef GRADFLOW_HAVE_NCCL
    case Backend::kNccl: return make_nccl_engine(config);
#endif
    default:
      throw DeviceError(str_cat("the ", backend_name(backend), " backend: gradflow was built without it (",
                                backend == Backend::kNccl ? "needs CUDA and NCCL" : "install its -dev package",
                                " and rebuild)"));
  }
}

// A store for an MPI job started without one: rank 0 serves a TcpStore on its hostname and a fresh random
// token, and tells the other ranks where through MPI itself (a trusted channel), so failure notices and
// the debug checks work under plain mpirun too.
std::shared_ptr<Store> store_over_mpi(Engine& engine, Timeout timeout) {
  constexpr int64_t kMessage = 512;
  char message[kMessage] = {};
  std::unique_ptr<TcpStore> served;
  if (engine.rank() == 0) {
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    std::random_device random;
    std::string token = str_cat(random(), random(), random(), random());
    absl::StatusOr<std::unique_ptr<TcpStore>> store =
        TcpStore::create({.host = host, .port = 0, .is_server = true, .job_token = token, .timeout = timeout});
    if (store.ok()) {
      std::snprintf(message, kMessage, "%s %u %s", host, static_cast<unsigned>((*store)->port()), token.c_str());
      served = std::move(*store);
    } else {
      std::snprintf(message, kMessage, "! %s", store.status().ToString().c_str());
    }
  }
  engine.broadcast(message, kMessage, kU8, 0, timeout);
  char host[256] = {}, token[128] = {};
  unsigned port = 0;
  if (message[0] == '!' || std::sscanf(message, "%255s %u %127s", host, &port, token) != 3) {
    throw CollectiveError(CollectiveFailure::kEngine, str_cat("mpi backend: rank 0 could not serve a store: ", message));
  }
  if (served) return served;
  absl::StatusOr<std::unique_ptr<TcpStore>> store = TcpStore::create(
      {.host = host, .port = static_cast<uint16_t>(port), .job_token = token, .timeout = timeout});
  if (!store.ok()) {
    throw CollectiveError(CollectiveFailure::kEngine, str_cat("mpi backend: cannot reach rank 0's store at ", host,
                                                              ":", port, ": ", store.status().ToString()));
  }
  return std::move(*store);
}

}  // namespace

std::unique_ptr<Communicator> create_communicator(const CommunicatorOptions& options) {
  if (options.size < 1 || options.rank < 0 || options.rank >= options.size) {
    throw ValueError(str_cat("create_communicator: rank ", options.rank, " of size ", options.size,
                             " is not a rank of the job"));
  }
  if (options.timeout.count() <= 0 || options.heartbeat.count() <= 0) {
    throw ValueError("create_communicator: timeout and heartbeat must be positive");
  }
  Backend backend = resolve(options);
  if (!options.store && backend != Backend::kMpi) {
    throw ValueError(str_cat("create_communicator: the ", backend_name(backend),
                             " backend needs a store (CommunicatorOptions::store) for its rendezvous"));
  }
  CommSettings settings{.options = options};
  std::shared_ptr<Store> engine_store;
  if (options.store) {
    // Each rank numbers the communicators it creates; all ranks create them in the same order, so the
    // n-th communicator of every rank shares the keys under "gradflow/comm<n>" and no other.
    absl::StatusOr<int64_t> n = options.store->add(str_cat("gradflow/communicators/rank", options.rank), 1);
    if (!n.ok()) {
      throw CollectiveError(CollectiveFailure::kEngine, str_cat("create_communicator: the store failed: ",
                                                                n.status().ToString()));
    }
    settings.job_store = std::make_shared<PrefixStore>(str_cat("gradflow/comm", *n), options.store);
    settings.comm_store = settings.job_store;
    engine_store = std::make_shared<PrefixStore>("engine", settings.job_store);
  }
  EngineConfig config{.rank = options.rank,
                      .size = options.size,
                      .store = engine_store,
                      .timeout = options.timeout,
                      .cuda_device = options.cuda_device,
                      .address = options.address,
                      .mpi_thread_single = options.mpi_thread_single,
                      .gloo_loop_batch = options.gloo_loop_batch};
  settings.options.backend = backend;
  std::unique_ptr<Engine> engine = make_engine(backend, config);
  if (!settings.job_store) {
    settings.job_store = std::make_shared<PrefixStore>("gradflow/comm1", store_over_mpi(*engine, options.timeout));
    settings.comm_store = settings.job_store;
  }
  if (options.shared_memory && backend != Backend::kNccl) {
    engine = share_memory_on_host(std::move(engine),
                                  {.timeout = options.timeout,
                                   .host = options.shared_memory_host,
                                   .store = std::make_shared<PrefixStore>("shm", settings.job_store)});
  }
  return std::make_unique<EngineCommunicator>(std::move(engine), std::move(settings));
}

#ifdef GRADFLOW_HAVE_NCCL
std::unique_ptr<LocalDeviceGroup> make_nccl_local_group(const std::vector<int>& devices);  // nccl/
#endif

bool local_device_group_built() {
#ifdef GRADFLOW_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

std::unique_ptr<LocalDeviceGroup> make_local_device_group(const std::vector<int>& devices) {
  if (devices.empty()) throw ValueError("local device group: no devices");
  std::set<int> seen;
  const int visible = cuda_device_count();
  for (int d : devices) {
    if (!seen.insert(d).second) throw ValueError(str_cat("local device group: cuda:", d, " is listed twice"));
    if (d < 0 || d >= visible) {
      throw DeviceError(str_cat("local device group: cuda:", d, " requested but ", visible, " CUDA device",
                                visible == 1 ? " is" : "s are", " visible"));
    }
  }
#ifdef GRADFLOW_HAVE_NCCL
  return make_nccl_local_group(devices);
#else
  throw ValueError("local device group: gradflow was built without NCCL");
#endif
}

}  // namespace gradflow::distributed
