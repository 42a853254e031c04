#include "distributed/store/tcp_store_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/tensor/error.h"
#include "distributed/store/store.h"

namespace gradflow::distributed {
namespace {

using wire::Op;
using wire::Reply;

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Compares tokens in time independent of where they first differ.
bool same_token(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) diff |= a[i] ^ b[i];
  return diff == 0;
}

absl::StatusOr<int> bind_listener(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
  if (rc != 0) {
    return absl::InvalidArgumentError(str_cat("TcpStore server: cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  std::string last_error = "no address";
  int fd = -1;
  for (addrinfo* ai = found; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
      last_error = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) {
    return absl::UnavailableError(str_cat("TcpStore server: cannot listen on ", host, ":", port, ": ", last_error));
  }
  return fd;
}

uint16_t bound_port(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpStoreServer>> TcpStoreServer::start(const std::string& host, uint16_t port,
                                                                      std::string job_token) {
  absl::StatusOr<int> fd = bind_listener(host, port);
  if (!fd.ok()) return fd.status();
  set_nonblocking(*fd);
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    ::close(*fd);
    return absl::InternalError(str_cat("TcpStore server: pipe: ", std::strerror(errno)));
  }
  return std::unique_ptr<TcpStoreServer>(
      new TcpStoreServer(*fd, wake[0], wake[1], bound_port(*fd), std::move(job_token)));
}

TcpStoreServer::TcpStoreServer(int listen_fd, int wake_read, int wake_write, uint16_t port,
                               std::string job_token)
    : listen_fd_(listen_fd), wake_read_(wake_read), wake_write_(wake_write), port_(port),
      job_token_(std::move(job_token)), thread_([this] { run(); }) {}

TcpStoreServer::~TcpStoreServer() {
  char byte = 1;
  while (::write(wake_write_, &byte, 1) < 0 && errno == EINTR) {
  }
  thread_.join();
  for (auto& [fd, conn] : conns_) ::close(fd);
  ::close(listen_fd_);
  ::close(wake_read_);
  ::close(wake_write_);
}

void TcpStoreServer::run() {
  std::vector<pollfd> fds;
  while (true) {
    fds.clear();
    fds.push_back({wake_read_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (const auto& [fd, conn] : conns_) {
      fds.push_back({fd, static_cast<short>(POLLIN | (conn.out.empty() ? 0 : POLLOUT)), 0});
    }
    int n = ::poll(fds.data(), fds.size(), poll_timeout_ms(wire::Clock::now()));
    if (n < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) return;  // shutting down
    if (fds[1].revents & POLLIN) accept_all();
    for (size_t i = 2; i < fds.size(); ++i) {
      int fd = fds[i].fd;
      auto it = conns_.find(fd);
      if (it == conns_.end() || fds[i].revents == 0) continue;
      if (fds[i].revents & POLLOUT) write_to(fd, it->second);
      it = conns_.find(fd);
      if (it != conns_.end() && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) read_from(fd, it->second);
    }
    expire_waiters(wire::Clock::now());
  }
}

void TcpStoreServer::accept_all() {
  while (true) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: none left (other errors: the client gave up; try again next poll)
    conns_.emplace(fd, Conn{});
  }
}

void TcpStoreServer::read_from(int fd, Conn& conn) {
  char buf[64 * 1024];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      conn.in.append(buf, n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    close_conn(fd);  // end of stream or a reset
    return;
  }
  size_t at = 0;
  while (conn.in.size() - at >= wire::kFrameHeaderBytes) {
    uint32_t len = wire::frame_length(conn.in.data() + at);
    uint32_t limit = conn.authenticated ? wire::kMaxFrameBytes : wire::kMaxHandshakeBytes;
    if (len > limit) {
      close_conn(fd);
      return;
    }
    if (conn.in.size() - at - wire::kFrameHeaderBytes < len) break;
    std::string_view payload(conn.in.data() + at + wire::kFrameHeaderBytes, len);
    at += wire::kFrameHeaderBytes + len;
    if (!handle(fd, conn, payload)) break;
  }
  conn.in.erase(0, at);
  if (!conn.out.empty()) write_to(fd, conn);
}

void TcpStoreServer::write_to(int fd, Conn& conn) {
  while (!conn.out.empty()) {
    ssize_t n = ::send(fd, conn.out.data(), conn.out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      conn.out.erase(0, n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    close_conn(fd);
    return;
  }
  if (conn.close_after_write) close_conn(fd);
}

void TcpStoreServer::close_conn(int fd) {
  waiters_.remove_if([fd](const Waiter& w) { return w.fd == fd; });
  conns_.erase(fd);
  ::close(fd);
}

bool TcpStoreServer::handle(int fd, Conn& conn, std::string_view payload) {
  wire::Reader in(payload);
  uint8_t op = 0;
  in.u8(&op);
  if (!conn.authenticated) {
    std::string token;
    bool ok = op == static_cast<uint8_t>(Op::kHandshake) && in.str(&token) && same_token(token, job_token_);
    conn.out += wire::Writer().u8(static_cast<uint8_t>(ok ? Reply::kOk : Reply::kRefused)).frame();
    conn.authenticated = ok;
    conn.close_after_write = !ok;
    return ok;
  }
  handle_request(fd, conn, static_cast<Op>(op), in);
  return true;
}

namespace {

void reply_ok(std::string& out) { out += wire::Writer().u8(static_cast<uint8_t>(Reply::kOk)).frame(); }

void reply_bad(std::string& out, std::string_view message) {
  out += wire::Writer().u8(static_cast<uint8_t>(Reply::kBadRequest)).str(message).frame();
}

// Reads "n, key * n" (wait, check).
bool read_keys(wire::Reader& in, std::vector<std::string>* keys) {
  int64_t n = 0;
  if (!in.i64(&n) || n < 0 || n > (1 << 20)) return false;
  keys->resize(n);
  for (std::string& k : *keys) {
    if (!in.str(&k)) return false;
  }
  return true;
}

}  // namespace

void TcpStoreServer::handle_request(int fd, Conn& conn, Op op, wire::Reader& in) {
  std::string key, value;
  int64_t n = 0;
  switch (op) {
    case Op::kSet:
      if (!in.str(&key) || !in.str(&value)) return reply_bad(conn.out, "malformed set");
      data_[key] = std::move(value);
      reply_ok(conn.out);
      return on_key_set();
    case Op::kGet:
    case Op::kWait:
      return handle_wait(fd, conn, op, in);
    case Op::kAdd:
      return handle_add(conn, in);
    case Op::kCompareSet:
      return handle_compare_set(conn, in);
    case Op::kCheck: {
      std::vector<std::string> keys;
      if (!read_keys(in, &keys)) return reply_bad(conn.out, "malformed check");
      conn.out += wire::Writer().u8(static_cast<uint8_t>(Reply::kOk)).i64(all_present(keys) ? 1 : 0).frame();
      return;
    }
    case Op::kDeleteKey:
      if (!in.str(&key)) return reply_bad(conn.out, "malformed delete_key");
      n = static_cast<int64_t>(data_.erase(key));
      conn.out += wire::Writer().u8(static_cast<uint8_t>(Reply::kOk)).i64(n).frame();
      return;
    default:
      return reply_bad(conn.out, str_cat("unknown op ", static_cast<int>(op)));
  }
}

void TcpStoreServer::handle_wait(int fd, Conn& conn, Op op, wire::Reader& in) {
  Waiter w{fd, op, {}, {}};
  if (op == Op::kGet) {
    w.keys.resize(1);
    if (!in.str(&w.keys[0])) return reply_bad(conn.out, "malformed get");
  } else if (!read_keys(in, &w.keys)) {
    return reply_bad(conn.out, "malformed wait");
  }
  int64_t timeout_ms = 0;
  if (!in.i64(&timeout_ms)) return reply_bad(conn.out, "malformed get/wait timeout");
  w.deadline = wire::Clock::now() + std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 0));
  if (all_present(w.keys)) return reply_waiter(w, Reply::kOk);
  waiters_.push_back(std::move(w));
}

void TcpStoreServer::handle_add(Conn& conn, wire::Reader& in) {
  std::string key;
  int64_t delta = 0;
  if (!in.str(&key) || !in.i64(&delta)) return reply_bad(conn.out, "malformed add");
  int64_t value = 0;
  if (auto it = data_.find(key); it != data_.end()) {
    absl::StatusOr<int64_t> parsed = store_internal::parse_counter(key, it->second);
    if (!parsed.ok()) return reply_bad(conn.out, std::string(parsed.status().message()));
    value = *parsed;
  }
  value += delta;
  data_[key] = std::to_string(value);
  conn.out += wire::Writer().u8(static_cast<uint8_t>(Reply::kOk)).i64(value).frame();
  on_key_set();
}

void TcpStoreServer::handle_compare_set(Conn& conn, wire::Reader& in) {
  std::string key, expected, desired;
  if (!in.str(&key) || !in.str(&expected) || !in.str(&desired)) {
    return reply_bad(conn.out, "malformed compare_set");
  }
  auto it = data_.find(key);
  bool present = it != data_.end();
  if (!store_internal::compare_set_applies(present, present ? it->second : "", expected)) {
    conn.out += wire::Writer().u8(static_cast<uint8_t>(Reply::kOk)).str(present ? it->second : expected).frame();
    return;
  }
  data_[key] = desired;
  conn.out += wire::Writer().u8(static_cast<uint8_t>(Reply::kOk)).str(desired).frame();
  on_key_set();
}

bool TcpStoreServer::all_present(const std::vector<std::string>& keys) const {
  return std::all_of(keys.begin(), keys.end(), [&](const std::string& k) { return data_.count(k) > 0; });
}

void TcpStoreServer::reply_waiter(const Waiter& w, Reply reply) {
  auto it = conns_.find(w.fd);
  if (it == conns_.end()) return;
  wire::Writer out;
  out.u8(static_cast<uint8_t>(reply));
  if (w.op == Op::kGet && reply == Reply::kOk) out.str(data_.at(w.keys[0]));
  it->second.out += out.frame();
}

void TcpStoreServer::on_key_set() {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (all_present(it->keys)) {
      reply_waiter(*it, Reply::kOk);
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
}

void TcpStoreServer::expire_waiters(wire::Clock::time_point now) {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->deadline <= now) {
      reply_waiter(*it, Reply::kTimeout);
      int fd = it->fd;
      it = waiters_.erase(it);
      if (auto conn = conns_.find(fd); conn != conns_.end()) write_to(fd, conn->second);
    } else {
      ++it;
    }
  }
}

int TcpStoreServer::poll_timeout_ms(wire::Clock::time_point now) const {
  if (waiters_.empty()) return -1;
  auto first = std::min_element(waiters_.begin(), waiters_.end(),
                                [](const Waiter& x, const Waiter& y) { return x.deadline < y.deadline; });
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(first->deadline - now).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 1 << 30));
}

}  // namespace gradflow::distributed
