// MpiEngine: the Engine (distributed/comm/engine.h) over OpenMPI, for jobs started by mpirun. Each
// engine owns a duplicate of MPI_COMM_WORLD (or of a split of it), so gradflow's traffic never matches
// messages of other MPI users in the process, and sets MPI_ERRORS_RETURN on it so that failures become
// CollectiveError instead of aborting the job. Built only when CMake finds MPI (GRADFLOW_HAVE_MPI).
//
//   std::unique_ptr<Engine> engine = make_mpi_engine({.rank = r, .size = n});  // initializes MPI
//   engine->all_reduce(grads, grads, count, kF32, ReduceOp::kSum, timeout);     // in place
//
// Blocking MPI calls cannot be interrupted, so timeouts are ignored here (honours_timeouts() is false) and
// the communicator's watchdog ends a stuck process instead.
#pragma once

#include <mpi.h>

#include <memory>
#include <vector>

#include "distributed/comm/engine.h"

namespace gradflow::distributed {

class MpiEngine : public Engine {
 public:
  // Takes ownership of comm (a communicator no one else uses) and sets MPI_ERRORS_RETURN on it; frees it
  // when the constructor throws. Throws CollectiveError (kEngine) when an MPI call fails.
  explicit MpiEngine(MPI_Comm comm);
  // Frees the communicator unless MPI has already been finalized (at process exit).
  ~MpiEngine() override;
  MpiEngine(const MpiEngine&) = delete;
  MpiEngine& operator=(const MpiEngine&) = delete;

  Backend backend() const override { return Backend::kMpi; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  // The CPU always; a CUDA device only when this OpenMPI is CUDA-aware at build and at run time.
  bool supports_device(Device device) const override;
  // f32, f64, i32, i64 and u8 with sum, min, max and prod. Not kAvg (native_avg() is false), not
  // f16/bf16/bool (MPI has no such reductions; the communicator converts them).
  bool supports_reduction(DType dtype, ReduceOp op) const override;
  bool honours_timeouts() const override { return false; }
  // MPI runs below MPI_THREAD_SERIALIZED.
  bool inline_only() const override { return inline_only_; }

  // As Engine. Every call throws CollectiveError (kEngine) with MPI's error text when MPI fails;
  // ValueError for a count, displacement or tag MPI cannot express (more than INT_MAX elements for a
  // vector op, a tag outside [0, MPI_TAG_UB]); DTypeError for a reduction supports_reduction() refused.
  // Timeouts are ignored. Counts above INT_MAX are sent in chunks by all_reduce, broadcast, reduce, send
  // and recv.
  void all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op,
                  Timeout timeout) override;
  void broadcast(void* buffer, int64_t count, DType dtype, int root, Timeout timeout) override;
  void reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, int root,
              Timeout timeout) override;
  // In place when in points at this rank's part of out.
  void all_gather(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype,
                  Timeout timeout) override;
  // In place when in == out (out then holds the whole input on entry).
  void reduce_scatter(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype,
                      ReduceOp op, Timeout timeout) override;
  // In place when in == out, which needs send_counts == recv_counts.
  void all_to_all(const void* in, const std::vector<int64_t>& send_counts, void* out,
                  const std::vector<int64_t>& recv_counts, DType dtype, Timeout timeout) override;
  void barrier(Timeout timeout) override;
  void send(const void* buffer, int64_t count, DType dtype, int dst, int tag, Timeout timeout) override;
  // Also throws CollectiveError (kEngine) when the message holds a different number of elements:
  // "mpi: recv from rank 1 (tag 0): expected 10 f32 elements, got 9".
  void recv(void* buffer, int64_t count, DType dtype, int src, int tag, Timeout timeout) override;

  // Collective over `members` only (MPI_Comm_create_group), so ranks outside the new group need not call
  // it; returns nullptr for color < 0. `store` is unused.
  std::unique_ptr<Engine> split(int color, const std::vector<int>& members, int new_rank,
                                std::shared_ptr<Store> store) override;

 private:
  void check_tag(int tag, const char* op) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  int tag_ub_ = 32767;  // the least MPI_TAG_UB that MPI allows; replaced by the real one
  bool cuda_aware_ = false;
  bool inline_only_ = false;
};

}  // namespace gradflow::distributed
