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

std::string errno_text(const char* what, const std::string& name) {
  return str_cat(what, " ", name, ": ", std::strerror(errno));
}

}  // namespace

std::optional<ProcessMark> process_mark(pid_t pid) {
  std::ifstream in(str_cat("/proc/", pid, "/stat"));
  std::string text;
  if (!in || !std::getline(in, text)) return std::nullopt;
  // "pid (comm) state ppid ... starttime(22nd field) ...": comm may hold spaces and ')', so parse from the
  // last ')'.
  size_t close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close + 1));
  std::string state, skip;
  fields >> state;
  for (int field = 4; field < 22 && fields; ++field) fields >> skip;
  ProcessMark mark;
  if (!(fields >> mark.start_ticks)) return std::nullopt;
  mark.exited = state == "Z" || state == "X" || state == "x";
  return mark;
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
  slot_bytes = round_up(slot_bytes, kPage);
  const size_t bytes = data_offset(ranks) + static_cast<size_t>(ranks) * slot_bytes;
  std::random_device random;
  const uint64_t nonce = (static_cast<uint64_t>(random()) << 32) ^ random();
  const std::string name = str_cat("/gradflow-", ::getpid(), "-", nonce);
  int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(errno_text("shm_open", name));
  auto fail = [&](const char* what) {
    absl::Status status = absl::UnavailableError(errno_text(what, name));
    ::close(fd);
    ::shm_unlink(name.c_str());
    return status;
  };
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) return fail("ftruncate");
  // posix_fallocate returns the error instead of setting errno.
  if (int err = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes)); err != 0) {
    errno = err;
    return fail(str_cat("posix_fallocate of ", bytes, " bytes on").c_str());
  }
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return fail("mmap");
  ::close(fd);
  new (base) Header{.nonce = nonce, .failed_rank = -1, .failure_reason_ready = 0, .failure_reason = {}};
  std::unique_ptr<SharedSegment> segment(
      new SharedSegment(name, static_cast<char*>(base), bytes, ranks, slot_bytes, /*owner=*/true));
  for (int r = 0; r < ranks; ++r) new (&segment->line(r)) RankLine{.arrived = 0, .request = {0, 0}, .doorbell = 0, .sleeping = 0, .pid = 0, .start_ticks = 0};
  return segment;
}

absl::StatusOr<std::unique_ptr<SharedSegment>> SharedSegment::open(const std::string& name, uint64_t nonce, int ranks,
                                                                   size_t slot_bytes) {
  slot_bytes = round_up(slot_bytes, kPage);
  const size_t bytes = data_offset(ranks) + static_cast<size_t>(ranks) * slot_bytes;
  int fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(errno_text("shm_open", name));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != bytes) {
    ::close(fd);
    return absl::FailedPreconditionError(str_cat("shared memory ", name, " is ", st.st_size, " bytes, not ", bytes));
  }
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (base == MAP_FAILED) return absl::UnavailableError(errno_text("mmap", name));
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
