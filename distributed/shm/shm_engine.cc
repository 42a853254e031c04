#include "distributed/shm/shm_engine.h"

#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "distributed/comm/reduce_functions.h"
#include "distributed/shm/shared_segment.h"

namespace gradflow::distributed {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kLine = 64;
// The reduced part is combined and then copied to every slot a block at a time, so the block being
// copied is still in this core's L1.
constexpr size_t kBlockBytes = 8192;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// What makes two ranks share /dev/shm: the same kernel boot, hostname and /dev/shm mount. A hash of
// them, so that every rank sends the same 8 bytes.
int64_t host_identity() {
  std::string text;
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  text += host;
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  std::string boot_id;
  std::getline(boot, boot_id);
  text += "|" + boot_id;
  struct stat st {};
  if (::stat("/dev/shm", &st) == 0) text += str_cat("|", st.st_dev, ":", st.st_ino);
  uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
  return static_cast<int64_t>(hash);
}

class ShmEngine final : public Engine {
 public:
  ShmEngine(std::unique_ptr<Engine> inner, std::unique_ptr<SharedSegment> segment, std::vector<ProcessMark> peers,
            SharedMemoryConfig config)
      : inner_(std::move(inner)), segment_(std::move(segment)), peers_(std::move(peers)), config_(config) {}

  Backend backend() const override { return inner_->backend(); }
  std::string transport() const override { return str_cat(inner_->transport(), " + shared memory"); }
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  bool supports_device(Device device) const override { return inner_->supports_device(device); }
  Device staging_device() const override { return inner_->staging_device(); }
  bool supports_reduction(DType dtype, ReduceOp op) const override { return inner_->supports_reduction(dtype, op); }
  bool native_avg() const override { return inner_->native_avg(); }
  bool honours_timeouts() const override { return inner_->honours_timeouts(); }
  bool inline_only() const override { return inner_->inline_only(); }

  void all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, Timeout timeout) override {
    half_reduce::Fn combine = reduce_function(dtype, op);
    if (combine == nullptr) return inner_->all_reduce(in, out, count, dtype, op, timeout);
    if (count == 0) return;
    check_usable("all_reduce");
    const Clock::time_point deadline = Clock::now() + timeout;
    const size_t element = dtype_size(dtype);
    const int64_t per_piece = static_cast<int64_t>(segment_->slot_bytes() / element);
    try {
      for (int64_t offset = 0; offset < count; offset += per_piece) {
        const int64_t n = std::min(per_piece, count - offset);
        const size_t bytes = static_cast<size_t>(n) * element;
        std::memcpy(segment_->slot(rank()), static_cast<const char*>(in) + offset * element, bytes);
        arrive_and_wait(deadline, "all_reduce");
        reduce_my_part(combine, n, element);
        arrive_and_wait(deadline, "all_reduce");
        std::memcpy(static_cast<char*>(out) + offset * element, segment_->slot(rank()), bytes);
      }
    } catch (const CollectiveError& e) {
      give_up(e.what());
      throw;
    }
  }

  void broadcast(void* buffer, int64_t count, DType dtype, int root, Timeout timeout) override {
    inner_->broadcast(buffer, count, dtype, root, timeout);
  }
  void reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, int root, Timeout timeout) override {
    inner_->reduce(in, out, count, dtype, op, root, timeout);
  }
  void all_gather(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype,
                  Timeout timeout) override {
    inner_->all_gather(in, out, counts, dtype, timeout);
  }
  void reduce_scatter(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype, ReduceOp op,
                      Timeout timeout) override {
    inner_->reduce_scatter(in, out, counts, dtype, op, timeout);
  }
  void all_to_all(const void* in, const std::vector<int64_t>& send_counts, void* out,
                  const std::vector<int64_t>& recv_counts, DType dtype, Timeout timeout) override {
    inner_->all_to_all(in, send_counts, out, recv_counts, dtype, timeout);
  }
  void barrier(Timeout timeout) override { inner_->barrier(timeout); }
  void send(const void* buffer, int64_t count, DType dtype, int dst, int tag, Timeout timeout) override {
    inner_->send(buffer, count, dtype, dst, tag, timeout);
  }
  void recv(void* buffer, int64_t count, DType dtype, int src, int tag, Timeout timeout) override {
    inner_->recv(buffer, count, dtype, src, tag, timeout);
  }

  std::unique_ptr<Engine> split(int color, const std::vector<int>& members, int new_rank,
                                std::shared_ptr<Store> store) override {
    std::unique_ptr<Engine> part = inner_->split(color, members, new_rank, std::move(store));
    if (!part) return nullptr;
    return share_memory_on_host(std::move(part), config_);
  }

 private:
  // Part `rank` of the n elements in every slot (whole cache lines, so that no two ranks write one line),
  // combined across the slots and written back into all of them.
  void reduce_my_part(half_reduce::Fn combine, int64_t n, size_t element) {
    const int64_t per_line = static_cast<int64_t>(kLine / element);
    const int64_t lines = (n + per_line - 1) / per_line;
    const int64_t lo = std::min(n, lines * rank() / size() * per_line);
    const int64_t hi = std::min(n, lines * (rank() + 1) / size() * per_line);
    const int64_t per_block = static_cast<int64_t>(kBlockBytes / element);
    alignas(kLine) char acc[kBlockBytes];
    for (int64_t b = lo; b < hi; b += per_block) {
      const size_t k = static_cast<size_t>(std::min(per_block, hi - b));
      const size_t at = static_cast<size_t>(b) * element;
      // In rank order, whichever rank combines the part: the result does not depend on who did it.
      combine(acc, segment_->slot(0) + at, segment_->slot(1) + at, k);
      for (int r = 2; r < size(); ++r) combine(acc, acc, segment_->slot(r) + at, k);
      for (int r = 0; r < size(); ++r) std::memcpy(segment_->slot(r) + at, acc, k * element);
    }
  }

  void arrive_and_wait(Clock::time_point deadline, const char* op) {
    const uint64_t generation = ++generation_;
    segment_->line(rank()).arrived.store(generation, std::memory_order_release);
    for (int r = 0; r < size(); ++r) {
      if (r == rank()) continue;
      const std::atomic<uint64_t>& arrived = segment_->line(r).arrived;
      if (arrived.load(std::memory_order_acquire) >= generation) continue;
      // Spin first (the peer is usually a few microseconds away), then yield the core, then sleep: a rank
      // waiting long for a slower one costs nothing, and checks now and then for failures.
      const Clock::time_point start = Clock::now();
      Clock::time_point next_check = start;
      for (uint64_t spins = 0; arrived.load(std::memory_order_acquire) < generation; ++spins) {
        if (spins < 2048) {
          cpu_relax();
          continue;
        }
        const Clock::time_point now = Clock::now();
        if (now >= next_check) {
          check_peers(generation, now, deadline, op);
          next_check = now + std::chrono::milliseconds(5);
        }
        if (now - start < std::chrono::milliseconds(1)) {
          sched_yield();
        } else {
          std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
      }
    }
  }

  // Throws CollectiveError when waiting for barrier `generation` cannot succeed.
  void check_peers(uint64_t generation, Clock::time_point now, Clock::time_point deadline, const char* op) {
    check_usable(op);
    std::string missing;
    for (int r = 0; r < size(); ++r) {
      if (r == rank() || segment_->line(r).arrived.load(std::memory_order_acquire) >= generation) continue;
      const pid_t pid = segment_->line(r).pid.load(std::memory_order_relaxed);
      std::optional<ProcessMark> mark = process_mark(pid);
      if (!mark || mark->exited || mark->start_ticks != peers_[r].start_ticks) {
        throw CollectiveError(CollectiveFailure::kPeerFailure,
                              str_cat("shared memory: ", op, ": rank ", r, "'s process (pid ", pid, ") has exited"));
      }
      missing += str_cat(missing.empty() ? "" : ", ", r);
    }
    if (now >= deadline) {
      throw CollectiveError(CollectiveFailure::kTimeout,
                            str_cat("shared memory: ", op, " timed out; ranks that did not arrive: ", missing));
    }
  }

  // Throws once any rank has given up: the counters are out of step from then on.
  void check_usable(const char* op) {
    const int32_t failed = segment_->failed_rank().load(std::memory_order_acquire);
    if (failed < 0) return;
    std::string why;
    if (segment_->failure_reason_ready().load(std::memory_order_acquire) != 0) why = segment_->failure_reason();
    throw CollectiveError(CollectiveFailure::kPeerFailure,
                          str_cat("shared memory: ", op, ": rank ", failed, " gave up", why.empty() ? "" : " (", why,
                                  why.empty() ? "" : ")"));
  }

  // Tells the other ranks (the first to give up is recorded): their barriers fail instead of waiting out
  // their timeouts. The segment's counters are out of step from here on, so every later op fails too.
  void give_up(const char* why) {
    int32_t none = -1;
    if (!segment_->failed_rank().compare_exchange_strong(none, rank(), std::memory_order_acq_rel)) return;
    std::snprintf(segment_->failure_reason(), SharedSegment::kReasonBytes, "%s", why);
    segment_->failure_reason_ready().store(1, std::memory_order_release);
  }

  std::unique_ptr<Engine> inner_;
  std::unique_ptr<SharedSegment> segment_;
  std::vector<ProcessMark> peers_;  // each rank's process as the rendezvous saw it
  SharedMemoryConfig config_;
  uint64_t generation_ = 0;
};

// The ranks' agreement, through inner: every rank passes its own verdict and gets whether all said yes.
bool all_agree(Engine& inner, bool mine, Timeout timeout) {
  int32_t ok = mine ? 1 : 0;
  inner.all_reduce(&ok, &ok, 1, kI32, ReduceOp::kMin, timeout);
  return ok == 1;
}

}  // namespace

std::unique_ptr<Engine> share_memory_on_host(std::unique_ptr<Engine> inner, const SharedMemoryConfig& config) {
  const int size = inner->size(), rank = inner->rank();
  if (size < 2 || inner->supports_device(Device::cuda(0))) return inner;
  // Everything below is collective and every rank reaches the same decision at each step.
  std::vector<int64_t> hosts(size);
  const int64_t mine = host_identity();
  inner->all_gather(&mine, hosts.data(), std::vector<int64_t>(size, 1), kI64, config.timeout);
  if (std::any_of(hosts.begin(), hosts.end(), [&](int64_t h) { return h != hosts[0]; })) return inner;

  struct Offer {
    char name[112];
    uint64_t nonce;
    int32_t ok;
    char error[124];
  } offer{};
  std::unique_ptr<SharedSegment> segment;
  std::string error;
  if (rank == 0) {
    absl::StatusOr<std::unique_ptr<SharedSegment>> created = SharedSegment::create(size, config.slot_bytes);
    if (created.ok()) {
      segment = std::move(*created);
      std::snprintf(offer.name, sizeof(offer.name), "%s", segment->name().c_str());
      offer.nonce = segment->nonce();
      offer.ok = 1;
    } else {
      std::snprintf(offer.error, sizeof(offer.error), "%s", created.status().ToString().c_str());
    }
  }
  inner->broadcast(&offer, sizeof(offer), kU8, 0, config.timeout);
  if (rank != 0 && offer.ok == 1) {
    absl::StatusOr<std::unique_ptr<SharedSegment>> opened =
        SharedSegment::open(offer.name, offer.nonce, size, config.slot_bytes);
    if (opened.ok()) segment = std::move(*opened);
  }
  const bool agreed = all_agree(*inner, segment != nullptr, config.timeout);
  if (segment) segment->unlink();  // every rank has mapped it (or given up): the name has done its job
  if (!agreed) return inner;

  std::optional<ProcessMark> me = process_mark(::getpid());
  segment->line(rank).pid.store(::getpid(), std::memory_order_relaxed);
  segment->line(rank).start_ticks.store(me ? me->start_ticks : 0, std::memory_order_relaxed);
  inner->barrier(config.timeout);
  // A peer's pid must name the same process here as there (no separate pid namespaces): failure checks
  // rely on it.
  std::vector<ProcessMark> peers(size);
  bool pids_agree = me.has_value();
  for (int r = 0; r < size && pids_agree; ++r) {
    std::optional<ProcessMark> mark = process_mark(segment->line(r).pid.load(std::memory_order_relaxed));
    pids_agree = mark && !mark->exited && mark->start_ticks == segment->line(r).start_ticks.load();
    if (mark) peers[r] = *mark;
  }
  if (!all_agree(*inner, pids_agree, config.timeout)) return inner;
  return std::make_unique<ShmEngine>(std::move(inner), std::move(segment), std::move(peers), config);
}

}  // namespace gradflow::distributed
