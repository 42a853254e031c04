#include "distributed/shm/shared_segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/status/status.h"
#include "core/tensor/error.h"

namespace gradflow::distributed {
namespace {

constexpr size_t kPage = 4096;

struct Header {
  uint64_t nonce;
  std::atomic<int32_t> failed_rank;
  std::atomic<int32_t> failure_reason_ready;
  char failure_reason[SharedSegment::kReasonBytes];
};
static_assert(sizeof(Header) <= kPage);

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

std::string errno_text(const std::string& what, const std::string& name, int error) {
  return str_cat(what, " ", name, ": ", std::strerror(error));
}

}  // namespace

std::optional<ProcessMark> process_mark(pid_t pid) {
  const int fd = ::open(str_cat("/proc/", pid, "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ESRCH) return std::nullopt;
    return ProcessMark{.unknown = true};
  }
  char buffer[1024];
  const ssize_t got = ::read(fd, buffer, sizeof(buffer) - 1);
  ::close(fd);
  if (got < 0) return errno == ESRCH ? std::nullopt : std::optional<ProcessMark>(ProcessMark{.unknown = true});
  const std::string text(buffer, static_cast<size_t>(got));
  // "pid (comm) state ppid ... starttime(22nd field) ...": comm may hold spaces and ')', so parse from the
  // last ')'.
  size_t close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close + 1));
  std::string state, skip;
  fields >> state;
  for (int field = 4; field < 22 && fields; ++field) fields >> skip;
  ProcessMark mark;
  if (!(fields >> mark.start_ticks)) return ProcessMark{.unknown = true};
  mark.exited = state == "Z" || state == "X" || state == "x";
  return mark;
}

// The segment's size for `ranks` slots of slot_bytes (rounded up to pages); nullopt if it overflows.
std::optional<size_t> SharedSegment::segment_bytes(int ranks, size_t slot_bytes) {
  size_t rounded = 0, slots = 0, total = 0;
  if (ranks < 1 || __builtin_add_overflow(slot_bytes, kPage - 1, &rounded)) return std::nullopt;
  rounded = rounded / kPage * kPage;
  if (__builtin_mul_overflow(rounded, static_cast<size_t>(ranks), &slots) ||
      __builtin_add_overflow(slots, data_offset(ranks), &total) || total > static_cast<size_t>(INT64_MAX)) {
    return std::nullopt;
  }
  return total;
}

size_t SharedSegment::data_offset(int ranks) {
  return round_up(kPage + static_cast<size_t>(ranks) * sizeof(RankLine), kPage);
}

SharedSegment::SharedSegment(std::string name, char* base, size_t bytes, int ranks, size_t slot_bytes, bool owner)
    : name_(std::move(name)),
      base_(base),
      bytes_(bytes),
      ranks_(ranks),
      slot_bytes_(slot_bytes),
      data_offset_(data_offset(ranks)),
      linked_(owner) {}

SharedSegment::~SharedSegment() {
  unlink();
  ::munmap(base_, bytes_);
}

void SharedSegment::unlink() {
  if (linked_) ::shm_unlink(name_.c_str());
  linked_ = false;
}

absl::StatusOr<std::unique_ptr<SharedSegment>> SharedSegment::create(int ranks, size_t slot_bytes) {
  const std::optional<size_t> total = segment_bytes(ranks, slot_bytes);
  if (!total) return absl::InvalidArgumentError(str_cat("shared memory of ", ranks, " slots of ", slot_bytes, " bytes"));
  slot_bytes = round_up(slot_bytes, kPage);
  const size_t bytes = *total;
  std::random_device random;
  const uint64_t nonce = (static_cast<uint64_t>(random()) << 32) ^ random();
  const std::string name = str_cat("/gradflow-", ::getpid(), "-", nonce);
  int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(errno_text("shm_open", name, errno));
  auto fail = [&](const std::string& what, int error) {
    absl::Status status = absl::UnavailableError(errno_text(what, name, error));
    ::close(fd);
    ::shm_unlink(name.c_str());
    return status;
  };
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) return fail("ftruncate", errno);
  // posix_fallocate returns the error instead of setting errno.
  if (int err = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes)); err != 0) {
    return fail(str_cat("posix_fallocate of ", bytes, " bytes on"), err);
  }
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return fail("mmap", errno);
  ::close(fd);
  new (base) Header{.nonce = nonce, .failed_rank = -1, .failure_reason_ready = 0, .failure_reason = {}};
  std::unique_ptr<SharedSegment> segment(
      new SharedSegment(name, static_cast<char*>(base), bytes, ranks, slot_bytes, /*owner=*/true));
  for (int r = 0; r < ranks; ++r) new (&segment->line(r)) RankLine{.arrived = 0, .request = {0, 0}, .op = {0, 0}, .doorbell = 0, .sleeping = 0, .pid = 0, .start_ticks = 0};
  return segment;
}

absl::StatusOr<std::unique_ptr<SharedSegment>> SharedSegment::open(const std::string& name, uint64_t nonce, int ranks,
                                                                   size_t slot_bytes) {
  const std::optional<size_t> total = segment_bytes(ranks, slot_bytes);
  if (!total) return absl::InvalidArgumentError(str_cat("shared memory of ", ranks, " slots of ", slot_bytes, " bytes"));
  slot_bytes = round_up(slot_bytes, kPage);
  const size_t bytes = *total;
  int fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(errno_text("shm_open", name, errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != bytes) {
    ::close(fd);
    return absl::FailedPreconditionError(str_cat("shared memory ", name, " is ", st.st_size, " bytes, not ", bytes));
  }
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int mmap_error = errno;
  ::close(fd);
  if (base == MAP_FAILED) return absl::UnavailableError(errno_text("mmap", name, mmap_error));
  std::unique_ptr<SharedSegment> segment(
      new SharedSegment(name, static_cast<char*>(base), bytes, ranks, slot_bytes, /*owner=*/false));
  if (segment->nonce() != nonce) {
    return absl::FailedPreconditionError(str_cat("shared memory ", name, " is not the one rank 0 created"));
  }
  return segment;
}

uint64_t SharedSegment::nonce() const { return reinterpret_cast<const Header*>(base_)->nonce; }

SharedSegment::RankLine& SharedSegment::line(int rank) const {
  return reinterpret_cast<RankLine*>(base_ + kPage)[rank];
}

std::atomic<int32_t>& SharedSegment::failed_rank() const { return reinterpret_cast<Header*>(base_)->failed_rank; }
std::atomic<int32_t>& SharedSegment::failure_reason_ready() const {
  return reinterpret_cast<Header*>(base_)->failure_reason_ready;
}
char* SharedSegment::failure_reason() const { return reinterpret_cast<Header*>(base_)->failure_reason; }

}  // namespace gradflow::distributed
