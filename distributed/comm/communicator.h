// Communicator: collective and point-to-point communication over tensors among the ranks of a job, one
// interface over MPI, Gloo and NCCL (docs/distributed.md).
//
//   std::unique_ptr<Communicator> comm = create_communicator({.backend = Backend::kGloo, .rank = r,
//                                                             .size = n, .store = store});
//   WorkPtr work = comm->all_reduce({grad_a, grad_b}, {.op = ReduceOp::kAvg});
//   ... overlap other work ...
//   std::vector<Tensor> averaged = work->result();   // waits; throws CollectiveError on failure
//
// Tensors are values (core/tensor/tensor.h): every op returns new tensors through its Work and never
// changes its inputs. Every call returns a Work. When the communicator is idle and `async_op` is false the
// op runs on the calling thread before the call returns (the lowest latency: no thread hand-off);
// otherwise it is queued for the communicator's progress thread and the call returns at once. Ops run in
// call order, which must be the same on every rank.
//
// Never hang silently: every op has a timeout (CommunicatorOptions::timeout, overridable per call). When
// it expires, or when a peer fails, the op fails with a CollectiveError naming the op, its sequence
// number and the ranks that did not arrive, and the failure is published through the store so that every
// other rank fails within about a second. A rank stuck inside an engine call that cannot be interrupted
// is ended (exit code kCollectiveFailureExitCode) after printing the error, rather than left hanging.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor/error.h"
#include "core/tensor/creation.h"
#include "core/tensor/tensor.h"
#include "distributed/store/store.h"

namespace gradflow::distributed {

using Timeout = std::chrono::milliseconds;
inline constexpr Timeout kDefaultCollectiveTimeout = std::chrono::minutes(10);
// A rank that must be ended because its engine is stuck in a failed collective exits with this code.
inline constexpr int kCollectiveFailureExitCode = 70;  // EX_SOFTWARE

enum class Backend { kAuto, kMpi, kGloo, kNccl };
enum class ReduceOp { kSum, kAvg, kMin, kMax, kProd };
inline constexpr size_t kNumReduceOps = static_cast<size_t>(ReduceOp::kProd) + 1;  // keep kProd last

std::string_view backend_name(Backend backend);  // "auto", "mpi", "gloo", "nccl"
std::string_view reduce_op_name(ReduceOp op);    // "sum", "avg", "min", "max", "prod"
// Parses "mpi", "gloo", "nccl" or "auto"; ValueError naming the value otherwise.
Backend parse_backend(std::string_view name);

// Why a collective failed. kTimeout: it did not complete in time; kPeerFailure: another rank reported a
// failure or its process died; kMismatch: ranks called different ops (debug mode); kEngine: the
// engine itself returned an error; kAborted: this communicator was aborted or destroyed.
enum class CollectiveFailure { kTimeout, kPeerFailure, kMismatch, kEngine, kAborted };

class CollectiveError : public Error {
 public:
  CollectiveError(CollectiveFailure kind, std::string message) : Error(std::move(message)), kind_(kind) {}
  CollectiveFailure kind() const { return kind_; }

 private:
  CollectiveFailure kind_;
};

// Per-call options. An unset timeout means the communicator's.
struct AllReduceOptions {
  ReduceOp op = ReduceOp::kSum;
  std::optional<Timeout> timeout;
  bool async_op = false;
  // Write the results into the inputs' memory (result() returns the inputs themselves), as MPI_IN_PLACE
  // and PyTorch's all_reduce do: no output allocation, for buffers the caller owns (gradient buckets,
  // small per-step values). Nothing may read or write the inputs until the op completes.
  bool in_place = false;
};
struct BroadcastOptions {
  int root = 0;
  std::optional<Timeout> timeout;
  bool async_op = false;
};
struct ReduceOptions {
  int root = 0;
  ReduceOp op = ReduceOp::kSum;
  std::optional<Timeout> timeout;
  bool async_op = false;
};
struct AllGatherOptions {
  std::optional<Timeout> timeout;
  bool async_op = false;
};
struct ReduceScatterOptions {
  ReduceOp op = ReduceOp::kSum;
  std::optional<Timeout> timeout;
  bool async_op = false;
};
struct AllToAllOptions {
  // Rows (of axis 0) of the input for each rank, in rank order; empty: equal parts (axis 0 must then
  // divide by the size). The rows received from each rank are exchanged first when the splits are given.
  std::vector<int64_t> input_splits;
  std::optional<Timeout> timeout;
  bool async_op = false;
};
struct BarrierOptions {
  std::optional<Timeout> timeout;
  bool async_op = false;
};
struct PointToPointOptions {
  int tag = 0;
  std::optional<Timeout> timeout;
  bool async_op = false;
};

// The handle of one op. Thread-safe.
class Work {
 public:
  virtual ~Work() = default;
  // Waits up to the op's timeout (or `timeout`); throws CollectiveError when the op failed or did not
  // complete in time (then the communicator is aborted: a late op cannot be matched up again).
  virtual void wait() = 0;
  virtual void wait(Timeout timeout) = 0;
  // Whether the op has finished, successfully or not, without waiting.
  virtual bool completed() const = 0;
  // The op's outputs, after wait(). Which ones: see each op below.
  virtual const std::vector<Tensor>& result() = 0;
};
using WorkPtr = std::shared_ptr<Work>;

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual Backend backend() const = 0;
  // How the data moves: "mpi", "gloo", "nccl", with " + shared memory" where all-reduces between ranks
  // of one host go through shared memory (CommunicatorOptions::shared_memory).
  virtual std::string transport() const { return std::string(backend_name(backend())); }

  // Every tensor reduced elementwise across ranks (coalesced: one engine call for all of them when they
  // share a dtype). result(): the reduced tensors, on every rank. Every rank passes the same shapes and
  // dtypes. kAvg needs a floating dtype; on bool, sum and max are "or", min and prod "and".
  virtual WorkPtr all_reduce(std::vector<Tensor> tensors, const AllReduceOptions& options = {}) = 0;
  // Blocking and in place: `tensor` is reduced across ranks into its own memory and the call returns when
  // that is done, throwing the CollectiveError a Work would have held (MPI_Allreduce with MPI_IN_PLACE;
  // PyTorch's all_reduce without async_op). The cheapest all-reduce: it waits for the ops called before
  // it, then runs on this thread with no Work, no allocation and no hand-off; for small values reduced
  // every step (a loss, metric counts) and buckets reduced after backward. (A tensor the engine cannot
  // take as it is, such as a non-contiguous view: all_reduce with in_place, waited for.)
  virtual void all_reduce_in_place(const Tensor& tensor, ReduceOp op = ReduceOp::kSum,
                                   std::optional<Timeout> timeout = std::nullopt) {
    all_reduce({tensor}, {.op = op, .timeout = timeout, .in_place = true})->wait();
  }
  // A zero-filled tensor for a buffer reduced in place again and again (a gradient bucket): where the
  // ranks share memory (one host, CommunicatorOptions::shared_memory) it lives where every rank can read
  // it, so all_reduce_in_place and in-place all_reduce of it, or of a contiguous slice, copy nothing
  // (symmetric memory, as PyTorch's SymmetricMemory); elsewhere it is an ordinary tensor. Collective:
  // every rank allocates the same shapes and dtypes in the same order, and reduces the same slices.
  virtual Tensor allocate_for_all_reduce(Shape shape, DType dtype, Device device = kCPU) {
    return zeros(std::move(shape), dtype, device);
  }
  // `bytes` bytes of zeroed host memory that every rank of this communicator reads and writes as one
  // copy, where they all share a host's memory (CommunicatorOptions::shared_memory, one host); an
  // undefined tensor elsewhere. A u8 tensor; views of other dtypes are made over its storage (64-byte
  // aligned). Collective: every rank asks for the same size in the same order. Ranks that write it must
  // agree among themselves who writes what when (a barrier, a collective).
  virtual Tensor allocate_shared(int64_t /*bytes*/) { return Tensor(); }
  // result(): root's tensors, on every rank; the others pass tensors of the same shapes and dtypes.
  virtual WorkPtr broadcast(std::vector<Tensor> tensors, const BroadcastOptions& options = {}) = 0;
  // result(): on root the reduced tensors; elsewhere the inputs, unchanged.
  virtual WorkPtr reduce(std::vector<Tensor> tensors, const ReduceOptions& options = {}) = 0;
  // result()[0]: every rank's input concatenated along axis 0 in rank order. all_gather needs equal
  // shapes; all_gather_v lets axis 0 differ (the sizes are exchanged first).
  virtual WorkPtr all_gather(const Tensor& input, const AllGatherOptions& options = {}) = 0;
  virtual WorkPtr all_gather_v(const Tensor& input, const AllGatherOptions& options = {}) = 0;
  // The input reduced across ranks, then split along axis 0 as numpy.array_split does (the first
  // dim0 % size ranks get one row more); result()[0]: this rank's part.
  virtual WorkPtr reduce_scatter(const Tensor& input, const ReduceScatterOptions& options = {}) = 0;
  // Blocking and in place: each rank's part of `tensor` (its rows as reduce_scatter splits axis 0, as
  // numpy.array_split does) is copied into every other rank's `tensor`, which then all hold the same
  // (MPI_Allgatherv with MPI_IN_PLACE). In symmetric memory (allocate_for_all_reduce, one host) each rank
  // writes its part straight into the others' buffers. Every rank passes the same shape and dtype.
  virtual void all_gather_in_place(const Tensor& tensor);
  // Rank i's part j (by input_splits, or equal parts) goes to rank j; result()[0]: the parts received,
  // concatenated along axis 0 in rank order.
  virtual WorkPtr all_to_all(const Tensor& input, const AllToAllOptions& options = {}) = 0;
  virtual WorkPtr barrier(const BarrierOptions& options = {}) = 0;
  // send's result() is empty; recv's result()[0] is a tensor of the given shape and dtype (the sender's
  // must match), on this communicator's device.
  virtual WorkPtr send(const Tensor& tensor, int dst, const PointToPointOptions& options = {}) = 0;
  virtual WorkPtr recv(Shape shape, DType dtype, int src, const PointToPointOptions& options = {}) = 0;

  // Collective over this communicator: ranks that pass the same color form a new communicator, ordered
  // by (key, rank); color < 0 returns nullptr (the rank joins none), as MPI_Comm_split does.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // Fails every pending and future op with kAborted and tells the other ranks through the store.
  virtual void abort(const std::string& reason) = 0;

  // Keys of this communicator's users in the job's store (under their own prefix; nullptr when the job
  // has no store), for coordinating the ranks beside the collectives, from any thread:
  // store/store_exchange.h. The watchdog shares the connection: poll (check()) rather than block in it.
  virtual std::shared_ptr<Store> store() = 0;
  // A function saying why this communicator failed ("" while it works: a failed or timed-out op, another
  // rank's failure notice, abort()), callable from any thread and after the communicator is destroyed
  // (it then says so). Work beside the collectives polls it to stop waiting for ranks that will not come.
  virtual std::function<std::string()> failure_probe() = 0;
};

struct CommunicatorOptions {
  Backend backend = Backend::kAuto;  // kAuto: MPI when started by mpirun (mpi_launched), else Gloo
  int rank = 0;
  int size = 1;
  // Rendezvous and failure notices. Needed by Gloo and NCCL; optional for MPI, where rank 0 then serves
  // a TcpStore on its hostname and tells the others its address and a fresh token through MPI.
  std::shared_ptr<Store> store;
  Timeout timeout = kDefaultCollectiveTimeout;
  // Before each collective, check that every rank calls the same op with the same dtype, shape, root
  // and sequence number, and fail with each rank's view of the first mismatch (GRADFLOW_DEBUG_COLLECTIVES).
  bool debug = false;
  // How often each rank publishes its progress and looks for failure notices from the others.
  Timeout heartbeat = std::chrono::milliseconds(200);
  // A rank whose heartbeat has not moved for this long is reported dead by rank 0.
  Timeout dead_after = std::chrono::seconds(5);
  bool mpi_launched = false;  // set from cluster::JobInfo (JobSource::kOpenMpi / kPmix / kSlurm)
  // MPI: initialise at MPI_THREAD_SINGLE (Open MPI's fastest level) instead of SERIALIZED; every op then
  // runs on the calling thread, async ones too (they return completed), so nothing overlaps. The same
  // happens when the program initialised MPI itself below SERIALIZED.
  bool mpi_thread_single = false;
  // Gloo: run its TCP event-loop thread at SCHED_BATCH, so that its wake-ups do not preempt the thread
  // that holds the lock it needs (which cost a 4 ms scheduler tick per op when ranks share cores;
  // distributed/gloo/loop_thread.h). false: the loop keeps the normal policy.
  bool gloo_loop_batch = true;
  // MPI and Gloo: when every rank is on this host, all-reduce host buffers through a shared-memory
  // segment instead of the backend (distributed/shm/; several times faster). false: the backend does all.
  bool shared_memory = true;
  // The host as shared memory sees it: ranks that name the same one share memory (empty: this machine's
  // hostname, kernel boot and /dev/shm). For tests that make several hosts of one machine, and for
  // containers that share /dev/shm under different hostnames.
  std::string shared_memory_host;
  int cuda_device = -1;       // NCCL: the device this rank uses
  // Gloo: the address of this host that the other ranks can reach; empty: what the hostname resolves to.
  std::string address;
};

// Creates the communicator for this rank; collective over options.size ranks (each must call it). Throws
// CollectiveError when the rendezvous fails or times out, ValueError for bad options, naming them, and
// DeviceError for a backend this build or machine lacks (e.g. "nccl: gradflow was built without NCCL").
std::unique_ptr<Communicator> create_communicator(const CommunicatorOptions& options);

// Whether this build has the backend (MPI, Gloo and NCCL are each optional at build time).
bool backend_built(Backend backend);

}  // namespace gradflow::distributed
