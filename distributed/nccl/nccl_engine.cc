// The NCCL engine (see nccl_engine.h): rendezvous through the store, one communication stream ordered
// against gradflow's compute stream with events, and a polling wait that honours timeouts by aborting.
#include "distributed/nccl/nccl_engine.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "core/tensor/cuda/cuda_check.h"
#include "core/tensor/cuda/cuda_device.h"
#include "distributed/nccl/nccl_common.h"

namespace gradflow::distributed {
namespace {

using nccl_internal::group;
using nccl_internal::nccl_dtype;
using nccl_internal::nccl_error;
using nccl_internal::nccl_op;

using Clock = std::chrono::steady_clock;
constexpr char kUniqueIdKey[] = "nccl_unique_id";

bool all_equal(const std::vector<int64_t>& counts) {
  for (int64_t c : counts) {
    if (c != counts.front()) return false;
  }
  return true;
}

const char* at(const void* p, int64_t elements, DType dtype) {
  return static_cast<const char*>(p) + elements * static_cast<int64_t>(dtype_size(dtype));
}
char* at(void* p, int64_t elements, DType dtype) {
  return static_cast<char*>(p) + elements * static_cast<int64_t>(dtype_size(dtype));
}

// Rank 0 makes the id; the others wait for it. The store is private to the communicator (prefixed).
ncclUniqueId exchange_unique_id(Store& store, int rank, Timeout timeout) {
  ncclUniqueId id;
  if (rank == 0) {
    ncclResult_t result = ncclGetUniqueId(&id);
    if (result != ncclSuccess) {
      throw CollectiveError(CollectiveFailure::kEngine,
                            str_cat("nccl: ncclGetUniqueId: ", nccl_error(nullptr, result)));
    }
    absl::Status status = store.set(kUniqueIdKey, std::string(id.internal, sizeof(id.internal)));
    if (!status.ok()) {
      throw CollectiveError(CollectiveFailure::kEngine, str_cat("nccl: publishing the unique id: ", status.ToString()));
    }
    return id;
  }
  absl::StatusOr<std::string> value = store.get(kUniqueIdKey, timeout);
  if (!value.ok()) {
    CollectiveFailure kind = absl::IsDeadlineExceeded(value.status()) ? CollectiveFailure::kTimeout
                                                                      : CollectiveFailure::kEngine;
    throw CollectiveError(kind, str_cat("nccl: rank ", rank, " waiting for rank 0's unique id: ",
                                        value.status().ToString()));
  }
  if (value->size() != sizeof(id.internal)) {
    throw CollectiveError(CollectiveFailure::kEngine, str_cat("nccl: the unique id in the store has ", value->size(),
                                                              " bytes, expected ", sizeof(id.internal)));
  }
  std::memcpy(id.internal, value->data(), sizeof(id.internal));
  return id;
}

}  // namespace

NcclEngine::NcclEngine(int rank, int size, int device, Timeout timeout, Store& store)
    : rank_(rank), size_(size), device_(device), timeout_(timeout) {
  int devices = cuda::device_count();
  if (device < 0 || device >= devices) {
    throw DeviceError(str_cat("nccl: cuda:", device, " requested but ", devices, " CUDA device",
                              devices == 1 ? " is" : "s are", " visible"));
  }
  try {
    std::optional<cuda::DeviceGuard> guard;
    try {
      guard.emplace(device_);
    } catch (const DeviceError& e) {
      throw DeviceError(str_cat("nccl: cannot use cuda:", device_, ": ", e.what()));
    }
    std::string where = str_cat("nccl: on cuda:", device_);
    cuda::check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), where + ": creating a stream");
    cuda::check(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming), where + ": creating an event");
    cuda::check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), where + ": creating an event");
    cuda::check(cudaMalloc(reinterpret_cast<void**>(&scratch_), sizeof(float)), where + ": cudaMalloc");
    ncclUniqueId id = exchange_unique_id(store, rank_, timeout_);
    ncclResult_t result = ncclCommInitRank(&comm_, size_, id, rank_);
    if (result != ncclSuccess) {
      comm_ = nullptr;
      throw CollectiveError(CollectiveFailure::kEngine, str_cat("nccl: ncclCommInitRank (rank ", rank_, " of ", size_,
                                                                " on cuda:", device_, "): ",
                                                                nccl_error(nullptr, result)));
    }
  } catch (...) {
    release();
    throw;
  }
}

NcclEngine::~NcclEngine() { release(); }

void NcclEngine::release() noexcept {
  try {
    cuda::DeviceGuard guard(device_);
    if (comm_ != nullptr) ncclCommDestroy(comm_);  // fail() has already aborted (and cleared) a failed one
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    if (compute_ready_ != nullptr) cudaEventDestroy(compute_ready_);
    if (done_ != nullptr) cudaEventDestroy(done_);
    if (scratch_ != nullptr) cudaFree(scratch_);
    cudaGetLastError();  // nothing can be done about a failure here; keep it from surfacing elsewhere
  } catch (...) {
  }
  comm_ = nullptr;
  stream_ = nullptr;
  compute_ready_ = done_ = nullptr;
  scratch_ = nullptr;
}

bool NcclEngine::supports_device(Device device) const { return device.is_cuda() && device.index == device_; }

bool NcclEngine::supports_reduction(DType dtype, ReduceOp op) const {
  return op != ReduceOp::kAvg || is_floating(dtype);
}

void NcclEngine::fail(CollectiveFailure kind, const std::string& message) {
  if (aborted_.empty()) {
    aborted_ = message;
    // The op may still be running, or this rank may be out of step with the others: no later op on this
    // communicator could be matched up, so end its kernels now rather than leave them spinning.
    if (comm_ != nullptr) ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  throw CollectiveError(kind, message);
}

template <typename Enqueue>
void NcclEngine::run(const char* op, Timeout timeout, Enqueue&& enqueue) {
  if (!aborted_.empty()) {
    throw CollectiveError(CollectiveFailure::kAborted,
                          str_cat("nccl: ", op, ": the communicator was aborted after: ", aborted_));
  }
  cudaStream_t compute = cuda::stream(device_);
  cuda::DeviceGuard guard(device_);
  auto check_cuda = [&](cudaError_t error, const char* what) {
    if (error == cudaSuccess) return;
    cudaGetLastError();
    fail(CollectiveFailure::kEngine, str_cat("nccl: ", op, ": ", what, ": ", cudaGetErrorString(error)));
  };
  check_cuda(cudaEventRecord(compute_ready_, compute), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(stream_, compute_ready_, 0), "cudaStreamWaitEvent");
  ncclResult_t result = enqueue();
  if (result != ncclSuccess) fail(CollectiveFailure::kEngine, str_cat("nccl: ", op, ": ", nccl_error(comm_, result)));
  check_cuda(cudaEventRecord(done_, stream_), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(compute, done_, 0), "cudaStreamWaitEvent");
  wait_done(op, timeout);
}

void NcclEngine::wait_done(const char* op, Timeout timeout) {
  // Saturate so that Timeout::max() means "no deadline" instead of overflowing.
  Clock::time_point start = Clock::now();
  Clock::time_point deadline = timeout >= std::chrono::duration_cast<Timeout>(Clock::time_point::max() - start)
                                   ? Clock::time_point::max()
                                   : start + timeout;
  for (int polls = 0;; ++polls) {
    cudaError_t query = cudaEventQuery(done_);
    if (query == cudaSuccess) return;
    if (query != cudaErrorNotReady) {
      cudaGetLastError();
      fail(CollectiveFailure::kEngine, str_cat("nccl: ", op, ": cudaEventQuery: ", cudaGetErrorString(query)));
    }
    ncclResult_t async = ncclSuccess;
    ncclResult_t result = ncclCommGetAsyncError(comm_, &async);
    if (result != ncclSuccess) async = result;
    if (async != ncclSuccess && async != ncclInProgress) {
      fail(CollectiveFailure::kEngine, str_cat("nccl: ", op, ": ", nccl_error(comm_, async)));
    }
    if (Clock::now() >= deadline) {
      fail(CollectiveFailure::kTimeout,
           str_cat("nccl: ", op, " did not complete within ", timeout.count(), " ms"));
    }
    // Small ops finish within microseconds: yield first rather than sleep past them.
    if (polls < 64) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
}

void NcclEngine::all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, Timeout timeout) {
  run("all_reduce", timeout, [&] {
    if (count == 0) return ncclSuccess;
    return ncclAllReduce(in, out, count, nccl_dtype(dtype), nccl_op(dtype, op), comm_, stream_);
  });
}

void NcclEngine::broadcast(void* buffer, int64_t count, DType dtype, int root, Timeout timeout) {
  run("broadcast", timeout, [&] {
    if (count == 0) return ncclSuccess;
    return ncclBroadcast(buffer, buffer, count, nccl_dtype(dtype), root, comm_, stream_);
  });
}

void NcclEngine::reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, int root,
                        Timeout timeout) {
  run("reduce", timeout, [&] {
    if (count == 0) return ncclSuccess;
    return ncclReduce(in, out, count, nccl_dtype(dtype), nccl_op(dtype, op), root, comm_, stream_);
  });
}

void NcclEngine::all_gather(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype,
                            Timeout timeout) {
  run("all_gather", timeout, [&] {
    if (engine_internal::total(counts) == 0) return ncclSuccess;
    if (all_equal(counts)) return ncclAllGather(in, out, counts.front(), nccl_dtype(dtype), comm_, stream_);
    // Unequal parts: each rank broadcasts its own part into its place (its source is only read there).
    std::vector<int64_t> offsets = engine_internal::prefix_offsets(counts);
    return group([&] {
      for (int r = 0; r < size_; ++r) {
        if (counts[r] == 0) continue;  // every rank knows the counts, so every rank skips it
        ncclResult_t result =
            ncclBroadcast(in, at(out, offsets[r], dtype), counts[r], nccl_dtype(dtype), r, comm_, stream_);
        if (result != ncclSuccess) return result;
      }
      return ncclSuccess;
    });
  });
}

void NcclEngine::reduce_scatter(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype,
                                ReduceOp op, Timeout timeout) {
  run("reduce_scatter", timeout, [&] {
    if (engine_internal::total(counts) == 0) return ncclSuccess;
    ncclRedOp_t nccl_reduce = nccl_op(dtype, op);
    if (all_equal(counts)) {
      return ncclReduceScatter(in, out, counts.front(), nccl_dtype(dtype), nccl_reduce, comm_, stream_);
    }
    // Unequal parts: part r is reduced onto rank r (out is only written on the root).
    std::vector<int64_t> offsets = engine_internal::prefix_offsets(counts);
    return group([&] {
      for (int r = 0; r < size_; ++r) {
        if (counts[r] == 0) continue;
        ncclResult_t result =
            ncclReduce(at(in, offsets[r], dtype), out, counts[r], nccl_dtype(dtype), nccl_reduce, r, comm_, stream_);
        if (result != ncclSuccess) return result;
      }
      return ncclSuccess;
    });
  });
}

void NcclEngine::all_to_all(const void* in, const std::vector<int64_t>& send_counts, void* out,
                            const std::vector<int64_t>& recv_counts, DType dtype, Timeout timeout) {
  run("all_to_all", timeout, [&] {
    std::vector<int64_t> send_offsets = engine_internal::prefix_offsets(send_counts);
    std::vector<int64_t> recv_offsets = engine_internal::prefix_offsets(recv_counts);
    return group([&] {
      // A zero count on one side is a zero count on the other, so both skip the pair.
      for (int r = 0; r < size_; ++r) {
        ncclResult_t result = ncclSuccess;
        if (send_counts[r] > 0) {
          result = ncclSend(at(in, send_offsets[r], dtype), send_counts[r], nccl_dtype(dtype), r, comm_, stream_);
        }
        if (result == ncclSuccess && recv_counts[r] > 0) {
          result = ncclRecv(at(out, recv_offsets[r], dtype), recv_counts[r], nccl_dtype(dtype), r, comm_, stream_);
        }
        if (result != ncclSuccess) return result;
      }
      return ncclSuccess;
    });
  });
}

void NcclEngine::barrier(Timeout timeout) {
  // A one-element all-reduce: it returns only after every rank has entered it.
  run("barrier", timeout, [&] { return ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_); });
}

void NcclEngine::send(const void* buffer, int64_t count, DType dtype, int dst, int tag, Timeout timeout) {
  // NCCL pairs a send to oneself only with a recv in the same group: alone it would wait out the timeout.
  if (dst == rank_ && count > 0) {
    throw CollectiveError(CollectiveFailure::kEngine, str_cat("nccl: send: rank ", rank_, " cannot send to itself"));
  }
  run("send", timeout, [&] {
    if (count == 0) return ncclSuccess;
    return ncclSend(buffer, count, nccl_dtype(dtype), dst, comm_, stream_);
  });
}

void NcclEngine::recv(void* buffer, int64_t count, DType dtype, int src, int tag, Timeout timeout) {
  if (src == rank_ && count > 0) {
    throw CollectiveError(CollectiveFailure::kEngine,
                          str_cat("nccl: recv: rank ", rank_, " cannot receive from itself"));
  }
  run("recv", timeout, [&] {
    if (count == 0) return ncclSuccess;
    return ncclRecv(buffer, count, nccl_dtype(dtype), src, comm_, stream_);
  });
}

std::unique_ptr<Engine> NcclEngine::split(int color, const std::vector<int>& members, int new_rank,
                                          std::shared_ptr<Store> store) {
  if (color < 0) return nullptr;  // joins no group
  if (!aborted_.empty()) {
    throw CollectiveError(CollectiveFailure::kAborted,
                          str_cat("nccl: split: the communicator was aborted after: ", aborted_));
  }
  GF_CHECK(store != nullptr, ValueError, "nccl: split needs a store for its rendezvous");
  return std::make_unique<NcclEngine>(new_rank, static_cast<int>(members.size()), device_, timeout_, *store);
}

std::unique_ptr<Engine> make_nccl_engine(const EngineConfig& config) {
  GF_CHECK(config.store != nullptr, ValueError, "nccl backend needs a store for its rendezvous");
  GF_CHECK(config.cuda_device >= 0, DeviceError, "nccl backend needs a CUDA device (cuda_device is ",
           config.cuda_device, ")");
  return std::make_unique<NcclEngine>(config.rank, config.size, config.cuda_device, config.timeout, *config.store);
}

}  // namespace gradflow::distributed
