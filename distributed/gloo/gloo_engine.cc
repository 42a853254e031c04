// The Gloo engine: CPU collectives over TCP between every pair of ranks (a full mesh), for jobs started
// without mpirun. The rendezvous goes through gradflow's own store (an adapter below), so Gloo works
// with the TcpStore that rank 0 serves and with the FileStore.
//
// Gloo's own algorithms are used where it has them (ring all-reduce, reduce, broadcast, all-gather-v,
// all-to-all-v, barrier). Reduce-scatter is an all-to-all-v of the parts followed by a local reduction:
// each rank sends and receives (n-1)/n of the data, the same volume as a ring reduce-scatter.
#include <signal.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "core/tensor/error.h"
#include "distributed/comm/engine.h"
#include "distributed/comm/half_reduce.h"
#include "distributed/comm/reduce_functions.h"
#include "distributed/gloo/loop_thread.h"
#include "gloo/allgatherv.h"
#include "gloo/allreduce.h"
#include "gloo/alltoallv.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/common/error.h"
#include "gloo/reduce.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/store.h"
#include "gloo/transport/tcp/device.h"

namespace gradflow::distributed {
namespace {

using engine_internal::prefix_offsets;
using engine_internal::total;

// gloo::rendezvous::Store over a gradflow Store; failures become CollectiveErrors naming the key.
class StoreAdapter : public gloo::rendezvous::Store {
 public:
  StoreAdapter(std::shared_ptr<distributed::Store> store, Timeout timeout) : store_(std::move(store)), timeout_(timeout) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    check(store_->set(key, std::string(data.begin(), data.end())), key);
  }
  std::vector<char> get(const std::string& key) override {
    absl::StatusOr<std::string> value = store_->get(key, timeout_);
    check(value.status(), key);
    return std::vector<char>(value->begin(), value->end());
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    check(store_->wait(keys, timeout), keys.empty() ? "" : keys[0]);
  }

 private:
  static void check(const absl::Status& status, const std::string& key) {
    if (status.ok()) return;
    CollectiveFailure kind = status.code() == absl::StatusCode::kDeadlineExceeded ? CollectiveFailure::kTimeout
                                                                                    : CollectiveFailure::kEngine;
    throw CollectiveError(kind, str_cat("gloo rendezvous (key \"", key, "\"): ", status.ToString()));
  }
  std::shared_ptr<distributed::Store> store_;
  Timeout timeout_;
};

using ReduceFn = half_reduce::Fn;  // Gloo's signature: out = a op b, n elements

// Calls f(T{}) with T the C++ type of a dtype Gloo can reduce.
template <typename F>
void with_type(DType dtype, F&& f) {
  switch (dtype) {
    case kF32: return f(float{});
    case kF64: return f(double{});
    case kI32: return f(int32_t{});
    case kI64: return f(int64_t{});
    case kU8: return f(uint8_t{});
    case kF16: case kBF16: return f(uint16_t{});  // reduced by half_reduce's functions
    default: throw DTypeError(str_cat("gloo: cannot reduce ", dtype_name(dtype)));
  }
}

// The same elementwise functions the shared-memory all-reduce combines with (comm/reduce_functions.h).
ReduceFn reduce_fn(DType dtype, ReduceOp op) {
  if (ReduceFn fn = reduce_function(dtype, op)) return fn;
  if (op == ReduceOp::kAvg) throw ValueError("gloo: avg reaches the engine as sum");
  throw DTypeError(str_cat("gloo: cannot reduce ", dtype_name(dtype), " with ", reduce_op_name(op)));
}

// Gloo reports failures as exceptions derived from std::runtime_error; its timeouts say "Timed out".
[[noreturn]] void rethrow(const char* op, const std::exception& e) {
  std::string what = e.what();
  CollectiveFailure kind = what.find("Timed out") != std::string::npos || what.find("timed out") != std::string::npos
                               ? CollectiveFailure::kTimeout
                           : dynamic_cast<const gloo::IoException*>(&e) != nullptr ? CollectiveFailure::kPeerFailure
                                                                                    : CollectiveFailure::kEngine;
  throw CollectiveError(kind, str_cat("gloo: ", op, ": ", what));
}

template <typename F>
void guarded(const char* op, F&& f) {
  try {
    f();
  } catch (const CollectiveError&) {
    throw;
  } catch (const std::exception& e) {
    rethrow(op, e);
  }
}

// Element counts as byte counts, in the integer type the Gloo option wants.
template <typename T>
std::vector<T> to_bytes(const std::vector<int64_t>& counts, size_t element) {
  std::vector<T> bytes;
  for (int64_t c : counts) bytes.push_back(static_cast<T>(c) * static_cast<T>(element));
  return bytes;
}

// Send/recv slots live apart from those of the collectives (which use tag 0).
constexpr uint64_t kPointToPointSlot = uint64_t{1} << 56;

class GlooEngine : public Engine {
 public:
  GlooEngine(std::shared_ptr<gloo::Context> context, std::shared_ptr<gloo::transport::Device> device,
             Timeout timeout)
      : context_(std::move(context)), device_(std::move(device)), timeout_(timeout) {}

  Backend backend() const override { return Backend::kGloo; }
  int rank() const override { return context_->rank; }
  int size() const override { return context_->size; }
  bool supports_device(Device device) const override { return device.is_cpu(); }
  bool supports_reduction(DType dtype, ReduceOp op) const override {
    return op != ReduceOp::kAvg && (dtype == kF32 || dtype == kF64 || dtype == kI32 || dtype == kI64 ||
                                    dtype == kU8 || dtype == kF16 || dtype == kBF16);
  }
  bool honours_timeouts() const override { return true; }

  void all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, Timeout timeout) override {
    if (count == 0) return;
    guarded("all_reduce", [&] {
      gloo::AllreduceOptions opts(context_);
      opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
      with_type(dtype, [&](auto t) {
        using T = decltype(t);
        // Separate input and output: Gloo's ring reads the input as it goes, no copy beforehand.
        if (in != out) opts.setInput(const_cast<T*>(static_cast<const T*>(in)), count);
        opts.setOutput(static_cast<T*>(out), count);
      });
      opts.setReduceFunction(reduce_fn(dtype, op));
      opts.setTimeout(timeout);
      gloo::allreduce(opts);
    });
  }

  void broadcast(void* buffer, int64_t count, DType dtype, int root, Timeout timeout) override {
    if (count == 0) return;
    guarded("broadcast", [&] {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(static_cast<uint8_t*>(buffer), count * dtype_size(dtype));
      opts.setRoot(root);
      opts.setTimeout(timeout);
      gloo::broadcast(opts);
    });
  }

  void reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, int root, Timeout timeout) override {
    if (count == 0) return;
    size_t bytes = count * dtype_size(dtype);
    // Gloo's reduce works in place on every rank's buffer: reduce a copy so the input stays intact.
    std::vector<uint8_t> scratch(static_cast<const uint8_t*>(in), static_cast<const uint8_t*>(in) + bytes);
    guarded("reduce", [&] {
      gloo::ReduceOptions opts(context_);
      with_type(dtype, [&](auto t) { opts.setOutput(reinterpret_cast<decltype(t)*>(scratch.data()), count); });
      opts.setRoot(root);
      opts.setReduceFunction(reduce_fn(dtype, op));
      opts.setTimeout(timeout);
      gloo::reduce(opts);
    });
    if (rank() == root) std::memcpy(out, scratch.data(), bytes);
  }

  void all_gather(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype,
                  Timeout timeout) override {
    if (total(counts) == 0) return;
    size_t element = dtype_size(dtype);
    guarded("all_gather", [&] {
      gloo::AllgathervOptions opts(context_);
      opts.setInput(const_cast<uint8_t*>(static_cast<const uint8_t*>(in)), counts[rank()] * element);
      opts.setOutput(static_cast<uint8_t*>(out), to_bytes<size_t>(counts, element));
      opts.setTimeout(timeout);
      gloo::allgatherv(opts);
    });
  }

  void reduce_scatter(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype, ReduceOp op,
                      Timeout timeout) override {
    int n = size();
    size_t element = dtype_size(dtype);
    int64_t mine = counts[rank()];
    // Every rank sends part r of its input to rank r and gets n copies of its own part back.
    std::vector<uint8_t> parts(static_cast<size_t>(mine) * n * element);
    all_to_all(in, counts, parts.data(), std::vector<int64_t>(n, mine), dtype, timeout);
    if (mine == 0) return;
    ReduceFn fn = reduce_fn(dtype, op);
    std::memcpy(out, parts.data(), mine * element);
    for (int r = 1; r < n; ++r) fn(out, out, parts.data() + r * mine * element, mine);
  }

  void all_to_all(const void* in, const std::vector<int64_t>& send_counts, void* out,
                  const std::vector<int64_t>& recv_counts, DType dtype, Timeout timeout) override {
    if (total(send_counts) == 0 && total(recv_counts) == 0) {
      barrier(timeout);  // someone else may still send: keep every rank's op sequence aligned
      return;
    }
    size_t element = dtype_size(dtype);
    guarded("all_to_all", [&] {
      gloo::AlltoallvOptions opts(context_);
      opts.setInput(const_cast<uint8_t*>(static_cast<const uint8_t*>(in)), to_bytes<int64_t>(send_counts, element));
      opts.setOutput(static_cast<uint8_t*>(out), to_bytes<int64_t>(recv_counts, element));
      opts.setTimeout(timeout);
      gloo::alltoallv(opts);
    });
  }

  void barrier(Timeout timeout) override {
    guarded("barrier", [&] {
      gloo::BarrierOptions opts(context_);
      opts.setTimeout(timeout);
      gloo::barrier(opts);
    });
  }

  void send(const void* buffer, int64_t count, DType dtype, int dst, int tag, Timeout timeout) override {
    guarded("send", [&] {
      auto buf = context_->createUnboundBuffer(const_cast<void*>(buffer), count * dtype_size(dtype));
      buf->send(dst, kPointToPointSlot | static_cast<uint32_t>(tag));
      buf->waitSend(timeout);
    });
  }

  void recv(void* buffer, int64_t count, DType dtype, int src, int tag, Timeout timeout) override {
    guarded("recv", [&] {
      auto buf = context_->createUnboundBuffer(buffer, count * dtype_size(dtype));
      buf->recv(src, kPointToPointSlot | static_cast<uint32_t>(tag));
      buf->waitRecv(timeout);
    });
  }

  std::unique_ptr<Engine> split(int color, const std::vector<int>& members, int new_rank,
                                std::shared_ptr<Store> store) override {
    if (color < 0) return nullptr;
    return connect(new_rank, static_cast<int>(members.size()), std::move(store), device_, timeout_);
  }

  static std::unique_ptr<Engine> connect(int rank, int size, std::shared_ptr<Store> store,
                                         std::shared_ptr<gloo::transport::Device> device, Timeout timeout) {
    auto context = std::make_shared<gloo::rendezvous::Context>(rank, size);
    context->setTimeout(timeout);
    StoreAdapter adapter(std::move(store), timeout);
    guarded("connect", [&] { context->connectFullMesh(adapter, device); });
    return std::make_unique<GlooEngine>(std::move(context), std::move(device), timeout);
  }

 private:
  std::shared_ptr<gloo::Context> context_;
  std::shared_ptr<gloo::transport::Device> device_;
  Timeout timeout_;
};

// Gloo writes to its sockets with writev, which raises SIGPIPE once a peer has died. At its default
// action that kills this rank at once (signal 13), before the op can fail with an error naming the dead
// rank. Python ignores SIGPIPE in every program it runs, so PyTorch's Gloo never meets it; gradflow
// ignores it too, unless the program has set its own handling.
void ignore_sigpipe_left_at_default() {
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && !(current.sa_flags & SA_SIGINFO) &&
      current.sa_handler == SIG_DFL) {
    ::signal(SIGPIPE, SIG_IGN);
  }
}

}  // namespace

std::unique_ptr<Engine> make_gloo_engine(const EngineConfig& config) {
  if (!config.store) throw ValueError("gloo backend: needs a store for its rendezvous");
  ignore_sigpipe_left_at_default();
  gloo::transport::tcp::attr attr;
  attr.hostname = config.address;  // empty: Gloo binds to the address this machine's hostname resolves to
  std::shared_ptr<gloo::transport::Device> device;
  guarded("device", [&] { device = gloo::transport::tcp::CreateDevice(attr); });
  // Only speed depends on it (a failure leaves the normal policy), so a failure is not an error.
  if (config.gloo_loop_batch) {
    set_gloo_loop_thread_batch(*device, std::min<Timeout>(config.timeout, std::chrono::seconds(10)));
  }
  return GlooEngine::connect(config.rank, config.size, config.store, std::move(device), config.timeout);
}

}  // namespace gradflow::distributed
