// NcclEngine: the Engine (distributed/comm/engine.h) over NCCL, for buffers on one CUDA device per rank.
// make_nccl_engine() is what the communicator calls for Backend::kNccl; nothing else should need this
// header.
//
// Each engine owns an NCCL communicator and a communication stream on its device. Every op is ordered
// after the work already queued on gradflow::cuda::stream(device) (where the buffers were written) and
// before whatever is queued there next, and the call returns only once the op has finished on the GPU,
// as the communicator expects. A call that overstays its timeout, or an asynchronous NCCL error, aborts
// the NCCL communicator (its kernels exit) and throws CollectiveError; every later call then fails with
// kAborted.
//
// Point-to-point: NCCL has no tags, so `tag` is ignored and the messages between two ranks are matched in
// the order they were sent.
//
// The header needs neither NCCL nor CUDA headers: the handles are declared here the way nccl.h and
// cuda_runtime_api.h declare them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "distributed/comm/engine.h"

typedef struct ncclComm* ncclComm_t;     // NOLINT: the same declaration as nccl.h
typedef struct CUstream_st* cudaStream_t;  // NOLINT: the same declarations as cuda_runtime_api.h
typedef struct CUevent_st* cudaEvent_t;    // NOLINT

namespace gradflow::distributed {

class NcclEngine final : public Engine {
 public:
  // Collective over `size` ranks: rank 0 creates NCCL's unique id and publishes it through `store` (key
  // "nccl_unique_id", relative to the store's prefix); the others wait up to `timeout` for it. DeviceError
  // when `device` is not a visible CUDA device; CollectiveError when the rendezvous or NCCL's
  // initialisation fails.
  NcclEngine(int rank, int size, int device, Timeout timeout, Store& store);
  ~NcclEngine() override;  // never throws
  NcclEngine(const NcclEngine&) = delete;
  NcclEngine& operator=(const NcclEngine&) = delete;

  Backend backend() const override { return Backend::kNccl; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  bool supports_device(Device device) const override;
  Device staging_device() const override { return Device::cuda(device_); }
  bool supports_reduction(DType dtype, ReduceOp op) const override;
  bool native_avg() const override { return true; }
  bool honours_timeouts() const override { return true; }

  void all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, Timeout timeout) override;
  void broadcast(void* buffer, int64_t count, DType dtype, int root, Timeout timeout) override;
  void reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, int root,
              Timeout timeout) override;
  void all_gather(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype,
                  Timeout timeout) override;
  void reduce_scatter(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype, ReduceOp op,
                      Timeout timeout) override;
  void all_to_all(const void* in, const std::vector<int64_t>& send_counts, void* out,
                  const std::vector<int64_t>& recv_counts, DType dtype, Timeout timeout) override;
  void barrier(Timeout timeout) override;
  void send(const void* buffer, int64_t count, DType dtype, int dst, int tag, Timeout timeout) override;
  void recv(void* buffer, int64_t count, DType dtype, int src, int tag, Timeout timeout) override;

  // A new NCCL communicator among `members` on the same device, its unique id exchanged through `store`.
  std::unique_ptr<Engine> split(int color, const std::vector<int>& members, int new_rank,
                                std::shared_ptr<Store> store) override;

 private:
  // Runs one op: orders it after the compute stream, calls enqueue() (which returns the first NCCL
  // error), orders the compute stream after it and waits for it up to timeout.
  template <typename Enqueue>
  void run(const char* op, Timeout timeout, Enqueue&& enqueue);
  void wait_done(const char* op, Timeout timeout);
  // Aborts the NCCL communicator (when not yet aborted) and throws CollectiveError(kind, message).
  [[noreturn]] void fail(CollectiveFailure kind, const std::string& message);
  void release() noexcept;  // what the destructor frees; also on a failed construction

  const int rank_;
  const int size_;
  const int device_;
  const Timeout timeout_;  // for the rendezvous of split()
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;     // communication stream
  cudaEvent_t compute_ready_ = nullptr;  // recorded on the compute stream before each op
  cudaEvent_t done_ = nullptr;          // recorded on the communication stream after each op
  float* scratch_ = nullptr;            // barrier()'s one-element all-reduce
  std::string aborted_;                 // why the communicator was aborted; empty while usable
};

}  // namespace gradflow::distributed
