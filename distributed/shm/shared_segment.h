// SharedSegment: the POSIX shared memory that the ranks of one host map for their collectives (shm/).
// Layout: a header page (a nonce that proves two ranks mapped the same segment, the first failed rank),
// then one cache line per rank (its arrival counter and process identity), then one data slot per rank,
// each slot_bytes long and page-aligned. The lowest rank creates it under a fresh random name; the
// others open it by that name; the creator unlinks the name as soon as all have mapped it, so nothing is
// left in /dev/shm whatever happens to the job later.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace gradflow::distributed {

// A process as /proc shows it: alive or not, and when it started (so that a recycled pid is not taken for
// the rank that had it).
struct ProcessMark {
  uint64_t start_ticks = 0;
  bool exited = false;   // a zombie
  bool unknown = false;  // /proc could not be read just now (out of file descriptors, say): no verdict
};
// nullopt when /proc has no such process.
std::optional<ProcessMark> process_mark(pid_t pid);

class SharedSegment {
 public:
  struct alignas(64) RankLine {
    std::atomic<uint64_t> arrived;  // the number of the last barrier this rank reached
    // Where this rank's op keeps its data (shm_engine.cc), by the parity of the barrier it is checked at:
    // a rank past a one-barrier op may announce its next op while a peer still reads this one's.
    std::atomic<uint64_t> request[2];
    std::atomic<uint64_t> op[2];  // what the op is (kind, size, dtype, reduction, root), by the same parity
    std::atomic<uint32_t> doorbell;  // rung (incremented, futex-woken) by a rank that arrives while this one sleeps
    std::atomic<uint32_t> sleeping;  // 1 while this rank may be asleep on its doorbell
    std::atomic<int32_t> pid;
    std::atomic<uint64_t> start_ticks;
  };
  static_assert(sizeof(RankLine) == 64, "one cache line per rank");
  static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<int32_t>::is_always_lock_free &&
                    sizeof(std::atomic<uint32_t>) == sizeof(uint32_t),
                "shared-memory synchronisation needs lock-free atomics");

  // A new segment for `ranks` ranks under a fresh name (name()); posix_fallocate reserves its memory, so
  // a full /dev/shm is an error here rather than a SIGBUS later.
  static absl::StatusOr<std::unique_ptr<SharedSegment>> create(int ranks, size_t slot_bytes);
  // The segment create() made under `name`; kFailedPrecondition when its nonce is not `nonce`.
  static absl::StatusOr<std::unique_ptr<SharedSegment>> open(const std::string& name, uint64_t nonce, int ranks,
                                                             size_t slot_bytes);
  ~SharedSegment();
  SharedSegment(const SharedSegment&) = delete;
  SharedSegment& operator=(const SharedSegment&) = delete;

  // Removes the name (the mapping stays); idempotent.
  void unlink();
  const std::string& name() const { return name_; }
  uint64_t nonce() const;
  int ranks() const { return ranks_; }
  size_t slot_bytes() const { return slot_bytes_; }

  RankLine& line(int rank) const;
  char* slot(int rank) const { return base_ + data_offset_ + static_cast<size_t>(rank) * slot_bytes_; }
  // The first rank that gave up on an op (-1: none), so that the others stop waiting for it, and why.
  // Only that rank writes the reason, before it sets failure_reason_ready.
  std::atomic<int32_t>& failed_rank() const;
  std::atomic<int32_t>& failure_reason_ready() const;
  char* failure_reason() const;
  static constexpr size_t kReasonBytes = 512;

 private:
  SharedSegment(std::string name, char* base, size_t bytes, int ranks, size_t slot_bytes, bool owner);
  static size_t data_offset(int ranks);
  static std::optional<size_t> segment_bytes(int ranks, size_t slot_bytes);

  std::string name_;
  char* base_;
  size_t bytes_;
  int ranks_;
  size_t slot_bytes_;
  size_t data_offset_;
  bool linked_;  // this process created the name and has not unlinked it yet
};

}  // namespace gradflow::distributed
