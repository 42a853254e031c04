#include "distributed/shm/shm_engine.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <numeric>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "distributed/comm/reduce_functions.h"
#include "distributed/shm/hierarchical_engine.h"
#include "distributed/shm/shared_segment.h"
#include "distributed/shm/wrapping_engine.h"

namespace gradflow::distributed {
namespace {

using shm_internal::Clock;
using shm_internal::deadline_after;
constexpr size_t kLine = 64;
// The reduced part is combined and then copied to every slot a block at a time, so the block being
// copied is still in this core's L1.
constexpr size_t kBlockBytes = 8192;
// Up to this size an all-reduce is "one-shot": every rank reads every slot and combines the whole
// message itself, after one barrier instead of two (what NCCL and PyTorch's SymmetricMemory do for
// small messages). Each slot ends with two areas of this size used by turns, so that a rank can write
// the next one-shot op while a slower peer still reads the last one.
constexpr size_t kOneShotBytes = 1024;
// How many pauses a waiting rank spins before it yields its core (tens of microseconds). 256 looked worse
// for the 2-rank seed model here (6 alternations: median 102k against 119k samples/s).
constexpr uint64_t kSpins = 2048;
// How often a waiting rank looks for failures (a peer gone, one that gave up, the deadline).
constexpr std::chrono::milliseconds kCheckEvery{5};
// With more ranks than cores and MPI underneath, all-reduces below this size go to MPI (small_ops_to_inner_).
constexpr size_t kOversubscribedMinBytes = 64 * 1024;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// FNV-1a over bytes: equal inputs give equal 8-byte keys on every rank.
uint64_t fnv1a(const void* data, size_t n) {
  uint64_t hash = 1469598103934665603ull;
  for (const unsigned char* p = static_cast<const unsigned char*>(data); n > 0; --n, ++p) {
    hash = (hash ^ *p) * 1099511628211ull;
  }
  return hash;
}

// What makes two ranks share /dev/shm: the same kernel boot, hostname and /dev/shm mount, unless the
// configuration names the host. A hash of it, so that every rank sends the same 8 bytes.
int64_t host_identity(const std::string& named) {
  std::string text = named;
  if (text.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    text += host;
    std::ifstream boot("/proc/sys/kernel/random/boot_id");
    std::string boot_id;
    std::getline(boot, boot_id);
    text += "|" + boot_id;
    struct stat st {};
    if (::stat("/dev/shm", &st) == 0) text += str_cat("|", st.st_dev, ":", st.st_ino);
  }
  return static_cast<int64_t>(fnv1a(text.data(), text.size()));
}

// The ranks' agreement, through inner: every rank passes its own verdict and gets whether all said yes.
bool all_agree(Engine& inner, bool mine, Timeout timeout) {
  int32_t ok = mine ? 1 : 0;
  inner.all_reduce(&ok, &ok, 1, kI32, ReduceOp::kMin, timeout);
  return ok == 1;
}

// A new segment mapped by every rank of inner (slots of slot_bytes), or nullptr on every rank when any
// could not create or map it. Collective; the name is unlinked before it returns.
std::shared_ptr<SharedSegment> segment_on_every_rank(Engine& inner, size_t slot_bytes, Timeout timeout) {
  struct Offer {
    char name[112];
    uint64_t nonce;
    int32_t ok;
  } offer{};
  std::shared_ptr<SharedSegment> segment;
  if (inner.rank() == 0) {
    absl::StatusOr<std::unique_ptr<SharedSegment>> created = SharedSegment::create(inner.size(), slot_bytes);
    if (created.ok()) {
      segment = std::move(*created);
      std::snprintf(offer.name, sizeof(offer.name), "%s", segment->name().c_str());
      offer.nonce = segment->nonce();
      offer.ok = 1;
    }
  }
  inner.broadcast(&offer, sizeof(offer), kU8, 0, timeout);
  if (inner.rank() != 0 && offer.ok == 1) {
    absl::StatusOr<std::unique_ptr<SharedSegment>> opened =
        SharedSegment::open(offer.name, offer.nonce, inner.size(), slot_bytes);
    if (opened.ok()) segment = std::move(*opened);
  }
  const bool agreed = all_agree(inner, segment != nullptr, timeout);
  if (segment) segment->unlink();  // every rank has mapped it (or given up): the name has done its job
  return agreed ? segment : nullptr;
}

class ShmEngine final : public shm_internal::WrappingEngine {
 public:
  ShmEngine(std::unique_ptr<Engine> inner, std::shared_ptr<SharedSegment> segment, std::vector<ProcessMark> peers,
            SharedMemoryConfig config, bool oversubscribed)
      : WrappingEngine(std::move(inner), std::move(config)),
        segment_(std::move(segment)),
        peers_(std::move(peers)),
        oversubscribed_(oversubscribed) {}

  std::string transport() const override { return str_cat(inner_->transport(), " + shared memory"); }

  void all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, Timeout timeout) override {
    half_reduce::Fn combine = reduce_function(dtype, op);
    const size_t element = dtype_size(dtype);
    const size_t bytes = static_cast<size_t>(count) * element;
    if (combine == nullptr || (small_ops_to_inner_ && bytes < kOversubscribedMinBytes)) {
      return inner_->all_reduce(in, out, count, dtype, op, timeout);
    }
    if (count == 0) return;
    check_usable("all_reduce");
    const Clock::time_point deadline = deadline_after(timeout);
    giving_up_on_error([&] {
      // In place in a buffer of allocate_symmetric: every rank's data is already where all can read it.
      if (Symmetric found = in == out ? find_symmetric(out, bytes) : Symmetric{}; found.segment) {
        announce(found.request, op_key('a', bytes, dtype, static_cast<int>(op)));
        arrive_and_wait(deadline, "all_reduce");
        check_requests("all_reduce", found.request);
        reduce_part(*found.segment, found.offset, combine, count, element);
        arrive_and_wait(deadline, "all_reduce");
        return;
      }
      announce(0, op_key('a', bytes, dtype, static_cast<int>(op)));
      if (bytes <= kOneShotBytes) {
        const size_t area = pieces_bytes() + (one_shots_++ % 2) * kOneShotBytes;
        std::memcpy(segment_->slot(rank()) + area, in, bytes);
        arrive_and_wait(deadline, "all_reduce");
        check_requests("all_reduce", 0);
        // out may be in: every slot holds a copy of its rank's data by now.
        combine_in_rank_order(out, *segment_, area, static_cast<size_t>(count), combine);
        return;
      }
      // Otherwise through this rank's slot, a piece at a time.
      const int64_t per_piece = static_cast<int64_t>(pieces_bytes() / element);
      for (int64_t offset = 0; offset < count; offset += per_piece) {
        const int64_t n = std::min(per_piece, count - offset);
        std::memcpy(segment_->slot(rank()), static_cast<const char*>(in) + offset * element, n * element);
        arrive_and_wait(deadline, "all_reduce");
        if (offset == 0) check_requests("all_reduce", 0);
        reduce_part(*segment_, 0, combine, n, element);
        arrive_and_wait(deadline, "all_reduce");
        std::memcpy(static_cast<char*>(out) + offset * element, segment_->slot(rank()), n * element);
      }
    });
  }

  // Each rank's part (counts[rank] elements, after the parts of the ranks before it) of the elementwise
  // combination of every rank's `in`. Every rank's data goes through its slot a piece at a time, and each
  // rank combines the elements of its own part, in rank order, straight into out. An `in` in a buffer of
  // allocate_symmetric is read where it is.
  void reduce_scatter(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype, ReduceOp op,
                      Timeout timeout) override {
    half_reduce::Fn combine = reduce_function(dtype, op);
    const size_t element = dtype_size(dtype);
    const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    const size_t bytes = static_cast<size_t>(total) * element;
    // An input in symmetric memory is read where it is, whatever the backend (MPI would copy it through
    // its own buffers first); other inputs go through the slots over Gloo only (MPI's are as fast).
    const Symmetric found = combine == nullptr ? Symmetric{} : find_symmetric(const_cast<void*>(in), bytes);
    if ((!gloo_ops_here_ && !found.segment) || combine == nullptr || counts.size() != static_cast<size_t>(size())) {
      return inner_->reduce_scatter(in, out, counts, dtype, op, timeout);
    }
    if (total == 0) return;
    check_usable("reduce_scatter");
    const Clock::time_point deadline = deadline_after(timeout);
    const int64_t lo = std::accumulate(counts.begin(), counts.begin() + rank(), int64_t{0});
    const int64_t hi = lo + counts[rank()];
    // Elements [a, b) of every rank's data, found at byte `at` of every slot of `segment`, combined into out.
    auto combine_into_out = [&](const SharedSegment& segment, size_t at, int64_t a, int64_t b) {
      if (a >= b) return;
      combine_in_rank_order(static_cast<char*>(out) + static_cast<size_t>(a - lo) * element, segment, at,
                            static_cast<size_t>(b - a), combine);
    };
    giving_up_on_error([&] {
      const uint64_t key = op_key('s', bytes, dtype, static_cast<int>(op));
      if (found.segment) {
        announce(found.request, key);
        arrive_and_wait(deadline, "reduce_scatter");
        check_requests("reduce_scatter", found.request);
        combine_into_out(*found.segment, found.offset + static_cast<size_t>(lo) * element, lo, hi);
        arrive_and_wait(deadline, "reduce_scatter");  // no rank changes its data while another reads it
        return;
      }
      announce(0, key);
      const int64_t per_piece = static_cast<int64_t>(pieces_bytes() / element);
      for (int64_t offset = 0; offset < total; offset += per_piece) {
        const int64_t n = std::min(per_piece, total - offset);
        std::memcpy(segment_->slot(rank()), static_cast<const char*>(in) + offset * element, n * element);
        arrive_and_wait(deadline, "reduce_scatter");
        if (offset == 0) check_requests("reduce_scatter", 0);
        const int64_t a = std::max(lo, offset), b = std::min(hi, offset + n);
        combine_into_out(*segment_, static_cast<size_t>(a - offset) * element, a, b);
        arrive_and_wait(deadline, "reduce_scatter");
      }
    });
  }

  // In symmetric memory: after a barrier (every rank's part is final, and every rank has called this),
  // each rank writes its part into every other rank's buffer; a second barrier ends it.
  bool all_gather_in_place(void* buffer, const std::vector<int64_t>& counts, DType dtype, Timeout timeout) override {
    const size_t element = dtype_size(dtype);
    const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    const size_t bytes = static_cast<size_t>(total) * element;
    if (counts.size() != static_cast<size_t>(size())) return false;
    const Symmetric found = find_symmetric(buffer, bytes);
    if (!found.segment) return false;
    if (total == 0) return true;
    check_usable("all_gather_in_place");
    const Clock::time_point deadline = deadline_after(timeout);
    const size_t lo = static_cast<size_t>(std::accumulate(counts.begin(), counts.begin() + rank(), int64_t{0})) * element;
    const size_t mine = static_cast<size_t>(counts[rank()]) * element;
    giving_up_on_error([&] {
      announce(found.request, op_key('i', bytes, dtype, 0));
      arrive_and_wait(deadline, "all_gather_in_place");
      check_requests("all_gather_in_place", found.request);
      const char* from = found.segment->slot(rank()) + found.offset + lo;
      for (int r = 0; r < size(); ++r) {
        if (r != rank() && mine > 0) std::memcpy(found.segment->slot(r) + found.offset + lo, from, mine);
      }
      arrive_and_wait(deadline, "all_gather_in_place");
    });
    return true;
  }

  // Every rank's `in` (counts[r] elements) one after another in out: each rank copies its part of each
  // piece of out into its slot, and every rank copies all the parts out.
  void all_gather(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype,
                  Timeout timeout) override {
    const size_t element = dtype_size(dtype);
    const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    if (!gloo_ops_here_ || counts.size() != static_cast<size_t>(size())) {
      return inner_->all_gather(in, out, counts, dtype, timeout);
    }
    if (total == 0) return;
    check_usable("all_gather");
    const Clock::time_point deadline = deadline_after(timeout);
    std::vector<int64_t> starts(counts.size() + 1, 0);
    for (size_t r = 0; r < counts.size(); ++r) starts[r + 1] = starts[r] + counts[r];
    giving_up_on_error([&] {
      announce(0, op_key('g', static_cast<uint64_t>(total) * element, dtype, 0));
      const int64_t per_piece = static_cast<int64_t>(pieces_bytes() / element);
      for (int64_t offset = 0; offset < total; offset += per_piece) {
        const int64_t end = std::min(total, offset + per_piece);
        // Rank r's elements within [offset, end): [a, b), at byte (a - offset) x element of its slot.
        auto part = [&](int r) { return std::pair{std::max(starts[r], offset), std::min(starts[r + 1], end)}; };
        if (auto [a, b] = part(rank()); a < b) {
          std::memcpy(segment_->slot(rank()) + (a - offset) * element,
                      static_cast<const char*>(in) + (a - starts[rank()]) * element, (b - a) * element);
        }
        arrive_and_wait(deadline, "all_gather");
        if (offset == 0) check_requests("all_gather", 0);
        for (int r = 0; r < size(); ++r) {
          if (auto [a, b] = part(r); a < b) {
            std::memcpy(static_cast<char*>(out) + a * element, segment_->slot(r) + (a - offset) * element,
                        (b - a) * element);
          }
        }
        arrive_and_wait(deadline, "all_gather");
      }
    });
  }

  std::shared_ptr<void> allocate_symmetric(size_t bytes, Timeout timeout) override {
    std::erase_if(symmetric_, [](const SymmetricBuffer& b) { return b.segment.expired(); });
    std::shared_ptr<SharedSegment> segment = segment_on_every_rank(*inner_, std::max<size_t>(bytes, 1), timeout);
    if (!segment) return nullptr;
    symmetric_.push_back({++symmetric_made_, segment});
    return std::shared_ptr<void>(segment, segment->slot(rank()));
  }

  // One copy for all: the first slot of a new segment, mapped by every rank.
  std::shared_ptr<void> allocate_shared(size_t bytes, Timeout timeout) override {
    std::shared_ptr<SharedSegment> segment = segment_on_every_rank(*inner_, std::max<size_t>(bytes, 1), timeout);
    if (!segment) return nullptr;
    return std::shared_ptr<void>(segment, segment->slot(0));
  }

  // Root's data through its slot: root copies a piece in, every rank waits, the others copy it out (and
  // wait again before root may reuse the slot); up to kOneShotBytes, one wait, through the one-shot
  // areas used by turns.
  void broadcast(void* buffer, int64_t count, DType dtype, int root, Timeout timeout) override {
    const size_t element = dtype_size(dtype);
    const size_t bytes = static_cast<size_t>(count) * element;
    if (!gloo_ops_here_) return inner_->broadcast(buffer, count, dtype, root, timeout);
    if (count == 0) return;
    check_usable("broadcast");
    const Clock::time_point deadline = deadline_after(timeout);
    char* data = static_cast<char*>(buffer);
    char* from = segment_->slot(root);
    giving_up_on_error([&] {
      announce(0, op_key('b', bytes, dtype, root));
      if (bytes <= kOneShotBytes) {
        const size_t area = pieces_bytes() + (one_shots_++ % 2) * kOneShotBytes;
        if (rank() == root) std::memcpy(from + area, data, bytes);
        arrive_and_wait(deadline, "broadcast");
        check_requests("broadcast", 0);
        if (rank() != root) std::memcpy(data, from + area, bytes);
        return;
      }
      for (size_t offset = 0; offset < bytes; offset += pieces_bytes()) {
        const size_t n = std::min(pieces_bytes(), bytes - offset);
        if (rank() == root) std::memcpy(from, data + offset, n);
        arrive_and_wait(deadline, "broadcast");
        if (offset == 0) check_requests("broadcast", 0);
        if (rank() != root) std::memcpy(data + offset, from, n);
        arrive_and_wait(deadline, "broadcast");
      }
    });
  }
  void barrier(Timeout timeout) override {
    if (!gloo_ops_here_) return inner_->barrier(timeout);
    check_usable("barrier");
    giving_up_on_error([&] {
      announce(0, op_key('r', 0, kU8, 0));
      arrive_and_wait(deadline_after(timeout), "barrier");
      check_requests("barrier", 0);
    });
  }
  void interrupt() override {
    interrupted_.store(true, std::memory_order_relaxed);
    inner_->interrupt();
  }

 private:
  // The part of each slot that larger all-reduces go through (the one-shot areas follow it).
  size_t pieces_bytes() const { return segment_->slot_bytes() - 2 * kOneShotBytes; }

  struct Symmetric {
    std::shared_ptr<SharedSegment> segment;  // null: not in a symmetric buffer
    size_t offset = 0;                       // bytes into this rank's slot
    uint64_t request = 0;                    // buffer number and offset, the same on every rank
  };
  Symmetric find_symmetric(void* data, size_t bytes) const {
    const char* p = static_cast<const char*>(data);
    for (const SymmetricBuffer& buffer : symmetric_) {
      std::shared_ptr<SharedSegment> segment = buffer.segment.lock();
      if (!segment) continue;
      const char* slot = segment->slot(rank());
      if (p >= slot && p + bytes <= slot + segment->slot_bytes()) {
        const size_t offset = static_cast<size_t>(p - slot);
        return {segment, offset, (buffer.id << 40) | offset};
      }
    }
    return {};
  }

  // Before arriving at the next barrier: where this op's data is, and what the op is (kind, size, dtype,
  // reduce op, root), so that ranks calling different ops fail together instead of pairing up wrong
  // barriers.
  void announce(uint64_t request, uint64_t op) {
    SharedSegment::RankLine& line = segment_->line(rank());
    line.request[(generation_ + 1) % 2].store(request, std::memory_order_relaxed);
    line.op[(generation_ + 1) % 2].store(op, std::memory_order_relaxed);
  }
  static uint64_t op_key(char kind, uint64_t bytes, DType dtype, int op_or_root) {
    const uint64_t fields[] = {static_cast<uint64_t>(kind), bytes, static_cast<uint64_t>(dtype),
                               static_cast<uint64_t>(static_cast<uint32_t>(op_or_root))};
    return fnv1a(fields, sizeof(fields));
  }

  // After the first barrier: every rank must have its data in the same place (all in the same symmetric
  // buffer at the same offset, or all in their slots), or the reduction would combine the wrong bytes.
  // Every rank sees the same requests, so all fail alike.
  void check_requests(const char* op, uint64_t mine) const {
    const uint64_t my_op = segment_->line(rank()).op[generation_ % 2].load(std::memory_order_relaxed);
    for (int r = 0; r < size(); ++r) {
      if (segment_->line(r).op[generation_ % 2].load(std::memory_order_relaxed) != my_op) {
        throw CollectiveError(CollectiveFailure::kMismatch,
                              str_cat("shared memory: ", op, ": rank ", r, " called another op, or with another ",
                                      "size, dtype, reduction or root, than rank ", rank()));
      }
      const uint64_t theirs = segment_->line(r).request[generation_ % 2].load(std::memory_order_relaxed);
      if (theirs != mine) {
        throw CollectiveError(CollectiveFailure::kMismatch,
                              str_cat("shared memory: ", op, ": ranks passed buffers in different places (rank ", r,
                                      ": ", describe(theirs), "; rank ", rank(), ": ", describe(mine), ")"));
      }
    }
  }
  static std::string describe(uint64_t request) {
    if (request == 0) return "an ordinary buffer";
    return str_cat("symmetric buffer ", request >> 40, " at byte ", request & ((uint64_t{1} << 40) - 1));
  }

  // The n elements at byte `at` of every slot of `segment`, combined into dst in rank order
  // (((slot 0 + slot 1) + slot 2) + ...), whichever rank combines them: float results are the same bits on
  // every rank. dst may be one of the slots' own elements only when it is slot 0's.
  void combine_in_rank_order(void* dst, const SharedSegment& segment, size_t at, size_t n,
                             half_reduce::Fn combine) const {
    combine(dst, segment.slot(0) + at, segment.slot(1) + at, n);
    for (int r = 2; r < size(); ++r) combine(dst, dst, segment.slot(r) + at, n);
  }

  // Part `rank` of the n elements at byte `offset` of every slot of `segment` (whole cache lines, so that
  // no two ranks write one line), combined across the slots and written back into all of them.
  void reduce_part(const SharedSegment& segment, size_t offset, half_reduce::Fn combine, int64_t n, size_t element) {
    const int64_t per_line = static_cast<int64_t>(kLine / element);
    const int64_t lines = (n + per_line - 1) / per_line;
    const int64_t lo = std::min(n, lines * rank() / size() * per_line);
    const int64_t hi = std::min(n, lines * (rank() + 1) / size() * per_line);
    const int64_t per_block = static_cast<int64_t>(kBlockBytes / element);
    alignas(kLine) char acc[kBlockBytes];
    for (int64_t b = lo; b < hi; b += per_block) {
      const size_t k = static_cast<size_t>(std::min(per_block, hi - b));
      const size_t at = offset + static_cast<size_t>(b) * element;
      combine_in_rank_order(acc, segment, at, k, combine);
      for (int r = 0; r < size(); ++r) std::memcpy(segment.slot(r) + at, acc, k * element);
    }
  }

  void arrive_and_wait(Clock::time_point deadline, const char* op) {
    const uint64_t generation = ++generation_;
    segment_->line(rank()).arrived.store(generation, std::memory_order_seq_cst);
    wake_sleepers();
    for (int r = 0; r < size(); ++r) {
      if (r == rank()) continue;
      const std::atomic<uint64_t>& arrived = segment_->line(r).arrived;
      if (arrived.load(std::memory_order_acquire) >= generation) continue;
      // Spin first (the peer is usually a few microseconds away), then yield the core for a while, then
      // sleep on this rank's doorbell until a rank arrives: a rank waiting long for a slower one costs
      // nothing, and checks every few milliseconds for failures. With more ranks than cores the peer may
      // be waiting for this very core: sleep at once.
      const Clock::time_point start = Clock::now();
      Clock::time_point next_check = start + kCheckEvery;
      const uint64_t spin_limit = oversubscribed_ ? 0 : kSpins;
      for (uint64_t spins = 0; arrived.load(std::memory_order_acquire) < generation; ++spins) {
        if (spins < spin_limit) {
          cpu_relax();
          continue;
        }
        // Cheap checks every time round; the peers' processes (read in /proc) every kCheckEvery.
        check_usable(op);
        if (interrupted_.load(std::memory_order_relaxed)) {
          throw CollectiveError(CollectiveFailure::kAborted,
                                str_cat("shared memory: ", op, ": the communicator failed while this rank waited"));
        }
        const Clock::time_point now = Clock::now();
        if (now >= next_check || now >= deadline) {
          check_peers(generation, now, deadline, op);
          next_check = now + kCheckEvery;
        }
        if (!oversubscribed_ && now - start < std::chrono::milliseconds(1)) {
          sched_yield();
        } else {
          sleep_until_rung(arrived, generation);
        }
      }
    }
  }

  // Sleeps (futex) until another rank rings this rank's doorbell, `arrived` reaches `generation`, or
  // kCheckEvery passes. The sleeping flag and the arrival are both sequentially consistent, so either
  // the arriving rank sees the flag and rings, or this rank sees the arrival before it sleeps.
  void sleep_until_rung(const std::atomic<uint64_t>& arrived, uint64_t generation) {
    SharedSegment::RankLine& me = segment_->line(rank());
    const uint32_t bell = me.doorbell.load(std::memory_order_seq_cst);
    me.sleeping.store(1, std::memory_order_seq_cst);
    if (arrived.load(std::memory_order_seq_cst) < generation) {
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(kCheckEvery).count();
      timespec timeout{.tv_sec = static_cast<time_t>(ns / 1'000'000'000), .tv_nsec = static_cast<long>(ns % 1'000'000'000)};
      // Not FUTEX_PRIVATE_FLAG: the word is shared between processes.
      ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&me.doorbell), FUTEX_WAIT, bell, &timeout, nullptr, 0);
    }
    me.sleeping.store(0, std::memory_order_relaxed);
  }

  // After arriving: wakes the ranks asleep in sleep_until_rung.
  void wake_sleepers() {
    for (int r = 0; r < size(); ++r) {
      if (r == rank()) continue;
      SharedSegment::RankLine& line = segment_->line(r);
      if (line.sleeping.load(std::memory_order_seq_cst) == 0) continue;
      line.doorbell.fetch_add(1, std::memory_order_seq_cst);
      ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&line.doorbell), FUTEX_WAKE, 1, nullptr, nullptr, 0);
    }
  }

  // Throws CollectiveError when waiting for barrier `generation` cannot succeed.
  void check_peers(uint64_t generation, Clock::time_point now, Clock::time_point deadline, const char* op) {
    std::string missing;
    for (int r = 0; r < size(); ++r) {
      const std::atomic<uint64_t>& arrived = segment_->line(r).arrived;
      if (r == rank() || arrived.load(std::memory_order_acquire) >= generation) continue;
      const pid_t pid = segment_->line(r).pid.load(std::memory_order_relaxed);
      std::optional<ProcessMark> mark = process_mark(pid);
      // No verdict when /proc could not be read this round.
      const bool gone = !mark || (!mark->unknown && (mark->exited || mark->start_ticks != peers_[r].start_ticks));
      // A peer may arrive and then end normally between the first look and /proc's answer.
      if (gone && arrived.load(std::memory_order_acquire) < generation) {
        throw CollectiveError(CollectiveFailure::kPeerFailure,
                              str_cat("shared memory: ", op, ": rank ", r, "'s process (pid ", pid, ") has exited"));
      }
      missing += str_cat(missing.empty() ? "" : ", ", r);
    }
    if (now >= deadline && !missing.empty()) {
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

  // Runs body; whatever it throws, this rank gives up first, so that the others stop waiting for it.
  template <typename F>
  void giving_up_on_error(F&& body) {
    try {
      body();
    } catch (const std::exception& e) {
      give_up(e.what());
      throw;
    } catch (...) {
      give_up("an error that is not a std::exception");
      throw;
    }
  }

  // Tells the other ranks (the first to give up is recorded): their barriers fail instead of waiting out
  // their timeouts. The segment's counters are out of step from here on, so every later op fails too.
  void give_up(const char* why) {
    int32_t none = -1;
    if (!segment_->failed_rank().compare_exchange_strong(none, rank(), std::memory_order_acq_rel)) return;
    std::snprintf(segment_->failure_reason(), SharedSegment::kReasonBytes, "%s", why);
    segment_->failure_reason_ready().store(1, std::memory_order_release);
  }

  std::shared_ptr<SharedSegment> segment_;  // barriers, failure notes, and the slots data is copied through
  // The buffers allocate_symmetric handed out (each alive while a tensor uses it), numbered in the order
  // they were made, which is the same on every rank.
  struct SymmetricBuffer {
    uint64_t id;
    std::weak_ptr<SharedSegment> segment;
  };
  std::vector<SymmetricBuffer> symmetric_;
  uint64_t symmetric_made_ = 0;
  std::vector<ProcessMark> peers_;  // each rank's process as the rendezvous saw it
  uint64_t generation_ = 0;
  uint64_t one_shots_ = 0;  // one-shot ops so far: which small area the next one uses
  // More ranks on this host than cores for them (mpirun --oversubscribe): waits sleep instead of spinning.
  // Agreed by all ranks at the rendezvous, since small_ops_to_inner_ must be the same everywhere.
  const bool oversubscribed_;
  // Oversubscribed, waiting for every other rank costs a trip through the scheduler per rank (35-60 us at
  // 4 ranks on 2 cores), where MPI's pairwise exchanges take 7-12 us: small all-reduces stay with MPI.
  // (Gloo's take 150-900 us there: shared memory still wins.)
  const bool small_ops_to_inner_ = oversubscribed_ && inner_->backend() == Backend::kMpi;
  // Broadcasts, barriers, all-gathers and reduce-scatters too, over Gloo only: its TCP broadcast takes 35-40
  // us for a few bytes (2 us here) and twice as long as here for megabytes, its all-gathers and
  // reduce-scatters 33-70 us for a few bytes, while MPI's are as fast as shared memory (its broadcast is a
  // single copy out of root's memory: 1.6 against 2.4 us small, 74 against 147 us for 1 MiB).
  const bool gloo_ops_here_ = inner_->backend() != Backend::kMpi;
  std::atomic<bool> interrupted_{false};  // interrupt(): the communicator has failed
};

}  // namespace

std::vector<int> hosts_of_ranks(Engine& engine, const SharedMemoryConfig& config) {
  const int size = engine.size();
  std::vector<int64_t> ids(size);
  const int64_t mine = host_identity(config.host);
  engine.all_gather(&mine, ids.data(), std::vector<int64_t>(size, 1), kI64, config.timeout);
  std::vector<int> hosts(size);
  std::vector<int64_t> seen;
  for (int r = 0; r < size; ++r) {
    auto at = std::find(seen.begin(), seen.end(), ids[r]);
    hosts[r] = static_cast<int>(at - seen.begin());
    if (at == seen.end()) seen.push_back(ids[r]);
  }
  return hosts;
}

std::unique_ptr<Engine> share_memory_on_host(std::unique_ptr<Engine> inner, const SharedMemoryConfig& config) {
  const int size = inner->size(), rank = inner->rank();
  if (size < 2 || inner->supports_device(Device::cuda(0))) return inner;
  // Everything below is collective and every rank reaches the same decision at each step.
  const std::vector<int> hosts = hosts_of_ranks(*inner, config);
  if (std::any_of(hosts.begin(), hosts.end(), [](int h) { return h != 0; })) {
    return make_hierarchical_engine(std::move(inner), hosts, config);
  }

  std::shared_ptr<SharedSegment> segment =
      segment_on_every_rank(*inner, config.slot_bytes + 2 * kOneShotBytes, config.timeout);
  if (!segment) return inner;

  std::optional<ProcessMark> me = process_mark(::getpid());
  if (me && me->unknown) me.reset();
  segment->line(rank).pid.store(::getpid(), std::memory_order_relaxed);
  segment->line(rank).start_ticks.store(me ? me->start_ticks : 0, std::memory_order_relaxed);
  inner->barrier(config.timeout);
  // A peer's pid must name the same process here as there (no separate pid namespaces): failure checks
  // rely on it.
  std::vector<ProcessMark> peers(size);
  bool pids_agree = me.has_value();
  for (int r = 0; r < size && pids_agree; ++r) {
    std::optional<ProcessMark> mark = process_mark(segment->line(r).pid.load(std::memory_order_relaxed));
    pids_agree = mark && !mark->exited && !mark->unknown && mark->start_ticks == segment->line(r).start_ticks.load();
    if (mark) peers[r] = *mark;
  }
  if (!all_agree(*inner, pids_agree, config.timeout)) return inner;
  // Oversubscribed if any rank counts fewer cores than ranks: every rank must take the same paths.
  const bool cores_enough = size <= static_cast<int>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  const bool oversubscribed = !all_agree(*inner, cores_enough, config.timeout);
  return std::make_unique<ShmEngine>(std::move(inner), std::move(segment), std::move(peers), config, oversubscribed);
}

}  // namespace gradflow::distributed
