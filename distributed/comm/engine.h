// Engine: what a backend (mpi/, gloo/, nccl/) implements. The generic communicator
// (communicator_impl.h) does everything else: checking inputs, packing tensors, staging device memory,
// numbering ops, running them inline or on the progress thread, timeouts, debug checks and failure
// notices. An engine only moves and reduces contiguous buffers, one op at a time (never two calls at
// once), and reports failure by throwing CollectiveError.
//
// Buffers are in elements of `dtype` and live on the device that supports_device() accepted (otherwise
// on staging_device(): host memory for MPI and Gloo, the communicator's GPU for NCCL). Reductions reach the engine only for dtypes it accepted in supports_reduction(); the
// communicator converts others (f16/bf16 through f32, bool as u8 with max/min) and implements kAvg as kSum
// followed by a division unless native_avg().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "distributed/comm/communicator.h"

namespace gradflow::distributed {

class Engine {
 public:
  virtual ~Engine() = default;

  virtual Backend backend() const = 0;
  // How the data moves, for logs and tests: the backend's name, "+ shared memory" where shm/ wraps it.
  virtual std::string transport() const { return std::string(backend_name(backend())); }
  virtual int rank() const = 0;
  virtual int size() const = 0;

  virtual bool supports_device(Device device) const = 0;
  // Where tensors on a device the engine does not support are copied for the call.
  virtual Device staging_device() const { return kCPU; }
  virtual bool supports_reduction(DType dtype, ReduceOp op) const = 0;
  virtual bool native_avg() const { return false; }
  // Whether a call honours its timeout by itself (Gloo does). When false, a call that overstays its
  // timeout cannot be interrupted, and the watchdog ends the process instead.
  virtual bool honours_timeouts() const = 0;
  // Whether every call must come from the thread that calls the communicator (MPI below
  // MPI_THREAD_SERIALIZED): the communicator then runs async ops inline too, never on its progress thread.
  virtual bool inline_only() const { return false; }

  // out may equal in (in place).
  virtual void all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op,
                          Timeout timeout) = 0;
  virtual void broadcast(void* buffer, int64_t count, DType dtype, int root, Timeout timeout) = 0;
  // out is written on root only (it may equal in there).
  virtual void reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, int root,
                      Timeout timeout) = 0;
  // out holds counts[r] elements from each rank r, in rank order; in holds counts[rank()].
  virtual void all_gather(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype,
                          Timeout timeout) = 0;
  // in holds sum(counts) elements; out gets the reduced part counts[rank()] (parts in rank order).
  virtual void reduce_scatter(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype,
                              ReduceOp op, Timeout timeout) = 0;
  // Part r of in (send_counts[r] elements) goes to rank r; out gets recv_counts[r] elements from each r.
  virtual void all_to_all(const void* in, const std::vector<int64_t>& send_counts, void* out,
                          const std::vector<int64_t>& recv_counts, DType dtype, Timeout timeout) = 0;
  virtual void barrier(Timeout timeout) = 0;
  virtual void send(const void* buffer, int64_t count, DType dtype, int dst, int tag, Timeout timeout) = 0;
  virtual void recv(void* buffer, int64_t count, DType dtype, int src, int tag, Timeout timeout) = 0;

  // Called once, from another thread, when the communicator has failed (a timeout, a peer's failure
  // notice, abort()): a call in progress should give up as soon as it can, throwing CollectiveError.
  // Engines that cannot interrupt a call ignore it; the watchdog then ends the process if it stays stuck.
  virtual void interrupt() {}

  // Memory of `bytes` that all_reduce reduces in place without copying it anywhere ("symmetric" memory,
  // as PyTorch's SymmetricMemory and NCCL's registered buffers): shm/ maps it into every rank of the host.
  // Collective: every rank asks for the same size in the same order, and all get memory or all get
  // nullptr (the engine has none). The pointer keeps the memory alive.
  virtual std::shared_ptr<void> allocate_symmetric(size_t /*bytes*/, Timeout /*timeout*/) { return nullptr; }
  // Each rank's part of `buffer` (counts[r] elements from the sum of the counts before it) copied into
  // every other rank's buffer, in place. Returns false (doing nothing) where the engine has no in-place
  // form for this buffer; the communicator then gathers through all_gather.
  virtual bool all_gather_in_place(void* /*buffer*/, const std::vector<int64_t>& /*counts*/, DType /*dtype*/,
                                   Timeout /*timeout*/) {
    return false;
  }
  // Memory of `bytes` that every rank reads and writes as one copy (shm/: one segment mapped by every
  // rank of the host). Collective like allocate_symmetric; nullptr where the engine has none.
  virtual std::shared_ptr<void> allocate_shared(size_t /*bytes*/, Timeout /*timeout*/) { return nullptr; }

  // The engine for the ranks `members` (ranks of this engine, in the new order), this rank being
  // members[new_rank]. `store` is private to the new group (already prefixed). Called collectively by
  // every rank of this engine, after the communicator has agreed on the members; a rank that joins no
  // group gets color < 0 and empty members, and returns nullptr (MPI needs it to take part).
  virtual std::unique_ptr<Engine> split(int color, const std::vector<int>& members, int new_rank,
                                        std::shared_ptr<Store> store) = 0;
};

// The backends' constructors, each defined only when its library was found at build time
// (backend_built()); the communicator calls them.
struct EngineConfig {
  int rank = 0;
  int size = 1;
  std::shared_ptr<Store> store;  // prefixed for this communicator; may be null for MPI
  Timeout timeout = kDefaultCollectiveTimeout;
  int cuda_device = -1;
  std::string address;  // Gloo: where peers reach this rank (empty: this machine's hostname)
  bool mpi_thread_single = false;  // MPI: initialise at MPI_THREAD_SINGLE (CommunicatorOptions)
  bool gloo_loop_batch = true;     // Gloo: its event-loop thread at SCHED_BATCH (CommunicatorOptions)
};
std::unique_ptr<Engine> make_mpi_engine(const EngineConfig& config);
std::unique_ptr<Engine> make_gloo_engine(const EngineConfig& config);
std::unique_ptr<Engine> make_nccl_engine(const EngineConfig& config);

// Helpers the engines share.
namespace engine_internal {
// "rank 3 (of 4)" style text and the like live with the communicator; engines only need these.
int64_t total(const std::vector<int64_t>& counts);
std::vector<int64_t> prefix_offsets(const std::vector<int64_t>& counts);  // exclusive prefix sums
}  // namespace engine_internal

}  // namespace gradflow::distributed
