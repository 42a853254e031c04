#include "distributed/store/wire.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "core/tensor/error.h"

namespace gradflow::distributed::wire {
namespace {

void put_le(std::string& buf, size_t at, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) buf[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

// Waits until fd is ready for events or the deadline passes; kUnavailable on a hang-up with nothing to read.
absl::Status wait_ready(int fd, short events, Clock::time_point deadline, const std::string& what) {
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return absl::DeadlineExceededError(str_cat(what, ": no reply before the deadline"));
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left + 1, 1 << 30)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(str_cat(what, ": poll: ", std::strerror(errno)));
    if (n > 0) return absl::OkStatus();  // readable, writable, or an error the next call reports
  }
}

}  // namespace

Writer& Writer::i64(int64_t v) {
  size_t at = buf_.size();
  buf_.resize(at + 8);
  put_le(buf_, at, static_cast<uint64_t>(v), 8);
  return *this;
}

Writer& Writer::str(std::string_view v) {
  size_t at = buf_.size();
  buf_.resize(at + 4);
  put_le(buf_, at, v.size(), 4);
  buf_.append(v.data(), v.size());
  return *this;
}

std::string Writer::frame() {
  put_le(buf_, 0, buf_.size() - kFrameHeaderBytes, 4);
  return buf_;
}

bool Reader::u8(uint8_t* v) {
  if (rest_.empty()) return false;
  *v = static_cast<uint8_t>(rest_[0]);
  rest_.remove_prefix(1);
  return true;
}

bool Reader::i64(int64_t* v) {
  if (rest_.size() < 8) return false;
  *v = static_cast<int64_t>(get_le(rest_.data(), 8));
  rest_.remove_prefix(8);
  return true;
}

bool Reader::str(std::string* v) {
  if (rest_.size() < 4) return false;
  uint64_t n = get_le(rest_.data(), 4);
  if (rest_.size() - 4 < n) return false;
  v->assign(rest_.data() + 4, n);
  rest_.remove_prefix(4 + n);
  return true;
}

uint32_t frame_length(const char* header) { return static_cast<uint32_t>(get_le(header, 4)); }

absl::Status send_all(int fd, std::string_view bytes, Clock::time_point deadline, const std::string& what) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      bytes.remove_prefix(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      absl::Status ready = wait_ready(fd, POLLOUT, deadline, what);
      if (!ready.ok()) return ready;
      continue;
    }
    return absl::UnavailableError(str_cat(what, ": send: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> recv_frame(int fd, Clock::time_point deadline, const std::string& what) {
  std::string buf(kFrameHeaderBytes, '\0');
  size_t have = 0;
  bool header = true;
  while (have < buf.size()) {
    ssize_t n = ::recv(fd, buf.data() + have, buf.size() - have, MSG_DONTWAIT);
    if (n > 0) {
      have += n;
    } else if (n == 0) {
      return absl::UnavailableError(str_cat(what, ": the server closed the connection"));
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      absl::Status ready = wait_ready(fd, POLLIN, deadline, what);
      if (!ready.ok()) return ready;
      continue;
    } else {
      return absl::UnavailableError(str_cat(what, ": recv: ", std::strerror(errno)));
    }
    if (header && have == kFrameHeaderBytes) {
      uint32_t len = frame_length(buf.data());
      if (len > kMaxFrameBytes) return absl::DataLossError(str_cat(what, ": reply frame of ", len, " bytes"));
      buf.assign(len, '\0');
      have = 0;
      header = false;
    }
  }
  return buf;
}

}  // namespace gradflow::distributed::wire
