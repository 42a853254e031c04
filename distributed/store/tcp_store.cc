#include "distributed/store/tcp_store.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "core/tensor/error.h"

namespace gradflow::distributed {
namespace {

using wire::Clock;
using wire::Op;
using wire::Reply;

// How long past a get/wait's own timeout the client waits for the server's timeout reply.
constexpr Store::Timeout kReplyMargin = std::chrono::seconds(2);

// One connection attempt to host:port; the socket, or the reason it failed.
absl::StatusOr<int> connect_once(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
  if (rc != 0) return absl::UnavailableError(str_cat("cannot resolve ", host, ": ", gai_strerror(rc)));
  std::string last_error = "no address";
  int fd = -1;
  for (addrinfo* ai = found; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      last_error = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) return absl::UnavailableError(last_error);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// Connects, retrying with a growing pause until connect_timeout.
absl::StatusOr<int> connect_retrying(const std::string& host, uint16_t port, Store::Timeout connect_timeout) {
  Clock::time_point deadline = Clock::now() + connect_timeout;
  std::chrono::milliseconds pause(10);
  while (true) {
    absl::StatusOr<int> fd = connect_once(host, port);
    if (fd.ok()) return fd;
    if (Clock::now() + pause >= deadline) {
      return absl::DeadlineExceededError(str_cat("TcpStore: cannot connect to ", host, ":", port, " within ",
                                                 connect_timeout.count(), " ms: ", fd.status().message()));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::milliseconds>(pause * 2, std::chrono::milliseconds(500));
  }
}

std::string keys_request(Op op, const std::vector<std::string>& keys, const int64_t* timeout_ms) {
  wire::Writer w;
  w.u8(static_cast<uint8_t>(op)).i64(static_cast<int64_t>(keys.size()));
  for (const std::string& k : keys) w.str(k);
  if (timeout_ms != nullptr) w.i64(*timeout_ms);
  return w.frame();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TcpStore>> TcpStore::create(const TcpStoreOptions& options) {
  std::unique_ptr<TcpStoreServer> server;
  uint16_t port = options.port;
  if (options.is_server) {
    absl::StatusOr<std::unique_ptr<TcpStoreServer>> started =
        TcpStoreServer::start(options.host, options.port, options.job_token);
    if (!started.ok()) return started.status();
    server = std::move(*started);
    port = server->port();
  }
  absl::StatusOr<int> fd = connect_retrying(options.host, port, options.connect_timeout);
  if (!fd.ok()) return fd.status();
  std::unique_ptr<TcpStore> store(new TcpStore(options, std::move(server), *fd, port));
  std::string hello = wire::Writer().u8(static_cast<uint8_t>(Op::kHandshake)).str(options.job_token).frame();
  absl::StatusOr<std::string> reply = store->call("handshake", hello, options.connect_timeout);
  uint8_t code = 0;
  if (reply.ok() && wire::Reader(*reply).u8(&code) && code == static_cast<uint8_t>(Reply::kOk)) return store;
  if (reply.ok() || absl::IsUnavailable(reply.status())) {  // a refusal, or closed on us before one came
    return absl::PermissionDeniedError(
        str_cat("TcpStore: the server at ", store->address(), " refused this client's job token"));
  }
  return reply.status();
}

TcpStore::TcpStore(const TcpStoreOptions& options, std::unique_ptr<TcpStoreServer> server, int fd, uint16_t port)
    : Store(options.timeout), server_(std::move(server)), host_(options.host), port_(port), fd_(fd) {}

TcpStore::~TcpStore() { ::close(fd_); }

std::string TcpStore::address() const { return str_cat(host_, ":", port_); }

absl::StatusOr<std::string> TcpStore::call(const std::string& what, std::string request, Timeout wait) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string context = str_cat("TcpStore ", what, " (server ", address(), ")");
  if (broken_) return absl::UnavailableError(str_cat(context, ": the connection was lost earlier"));
  Clock::time_point deadline = Clock::now() + wait + kReplyMargin;
  absl::Status sent = wire::send_all(fd_, request, deadline, context);
  absl::StatusOr<std::string> reply = sent.ok() ? wire::recv_frame(fd_, deadline, context) : sent;
  if (!reply.ok()) broken_ = true;  // a late reply would answer the next request
  return reply;
}

absl::Status TcpStore::set(const std::string& key, const std::string& value) {
  std::string request = wire::Writer().u8(static_cast<uint8_t>(Op::kSet)).str(key).str(value).frame();
  absl::StatusOr<std::string> reply = call(str_cat("set(\"", key, "\")"), std::move(request), timeout());
  if (!reply.ok()) return reply.status();
  uint8_t code = 0;
  if (!wire::Reader(*reply).u8(&code) || code != static_cast<uint8_t>(Reply::kOk)) {
    return absl::DataLossError(str_cat("TcpStore set(\"", key, "\"): malformed reply"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> TcpStore::get(const std::string& key, Timeout timeout) {
  std::string request =
      wire::Writer().u8(static_cast<uint8_t>(Op::kGet)).str(key).i64(timeout.count()).frame();
  absl::StatusOr<std::string> reply = call(str_cat("get(\"", key, "\")"), std::move(request), timeout);
  if (!reply.ok()) return reply.status();
  wire::Reader in(*reply);
  uint8_t code = 0;
  std::string value;
  if (!in.u8(&code)) return absl::DataLossError("TcpStore get: empty reply");
  if (code == static_cast<uint8_t>(Reply::kTimeout)) return store_internal::timeout_error("get", {key}, timeout);
  if (code != static_cast<uint8_t>(Reply::kOk) || !in.str(&value)) {
    return absl::DataLossError(str_cat("TcpStore get(\"", key, "\"): malformed reply"));
  }
  return value;
}

absl::StatusOr<int64_t> TcpStore::add(const std::string& key, int64_t delta) {
  std::string request = wire::Writer().u8(static_cast<uint8_t>(Op::kAdd)).str(key).i64(delta).frame();
  absl::StatusOr<std::string> reply = call(str_cat("add(\"", key, "\")"), std::move(request), timeout());
  if (!reply.ok()) return reply.status();
  wire::Reader in(*reply);
  uint8_t code = 0;
  int64_t value = 0;
  std::string message;
  if (in.u8(&code) && code == static_cast<uint8_t>(Reply::kBadRequest) && in.str(&message)) {
    return absl::InvalidArgumentError(message);
  }
  if (code != static_cast<uint8_t>(Reply::kOk) || !in.i64(&value)) {
    return absl::DataLossError(str_cat("TcpStore add(\"", key, "\"): malformed reply"));
  }
  return value;
}

absl::Status TcpStore::wait(const std::vector<std::string>& keys, Timeout timeout) {
  int64_t ms = timeout.count();
  absl::StatusOr<std::string> reply = call("wait", keys_request(Op::kWait, keys, &ms), timeout);
  if (!reply.ok()) return reply.status();
  uint8_t code = 0;
  wire::Reader(*reply).u8(&code);
  if (code == static_cast<uint8_t>(Reply::kTimeout)) return store_internal::timeout_error("wait", keys, timeout);
  if (code != static_cast<uint8_t>(Reply::kOk)) return absl::DataLossError("TcpStore wait: malformed reply");
  return absl::OkStatus();
}

absl::StatusOr<std::string> TcpStore::compare_set(const std::string& key, const std::string& expected,
                                                  const std::string& desired) {
  std::string request =
      wire::Writer().u8(static_cast<uint8_t>(Op::kCompareSet)).str(key).str(expected).str(desired).frame();
  absl::StatusOr<std::string> reply =
      call(str_cat("compare_set(\"", key, "\")"), std::move(request), timeout());
  if (!reply.ok()) return reply.status();
  wire::Reader in(*reply);
  uint8_t code = 0;
  std::string value;
  if (!in.u8(&code) || code != static_cast<uint8_t>(Reply::kOk) || !in.str(&value)) {
    return absl::DataLossError(str_cat("TcpStore compare_set(\"", key, "\"): malformed reply"));
  }
  return value;
}

absl::StatusOr<bool> TcpStore::check(const std::vector<std::string>& keys) {
  absl::StatusOr<std::string> reply = call("check", keys_request(Op::kCheck, keys, nullptr), timeout());
  if (!reply.ok()) return reply.status();
  wire::Reader in(*reply);
  uint8_t code = 0;
  int64_t present = 0;
  if (!in.u8(&code) || code != static_cast<uint8_t>(Reply::kOk) || !in.i64(&present)) {
    return absl::DataLossError("TcpStore check: malformed reply");
  }
  return present != 0;
}

absl::StatusOr<bool> TcpStore::delete_key(const std::string& key) {
  std::string request = wire::Writer().u8(static_cast<uint8_t>(Op::kDeleteKey)).str(key).frame();
  absl::StatusOr<std::string> reply =
      call(str_cat("delete_key(\"", key, "\")"), std::move(request), timeout());
  if (!reply.ok()) return reply.status();
  wire::Reader in(*reply);
  uint8_t code = 0;
  int64_t erased = 0;
  if (!in.u8(&code) || code != static_cast<uint8_t>(Reply::kOk) || !in.i64(&erased)) {
    return absl::DataLossError(str_cat("TcpStore delete_key(\"", key, "\"): malformed reply"));
  }
  return erased != 0;
}

}  // namespace gradflow::distributed
