// TcpStore: a Store served over TCP by rank 0 (a TcpStoreServer thread in its process); every rank,
// rank 0 included, talks to it as a client.
//
//   TcpStoreOptions options{.host = master_addr, .port = master_port, .is_server = rank == 0,
//                           .job_token = job_token, .timeout = std::chrono::seconds(60)};
//   absl::StatusOr<std::unique_ptr<TcpStore>> store = TcpStore::create(options);
//
// The address, port and job token come from the caller (cluster/ reads them from the environment); this
// folder reads no environment variables. A client that presents another token is refused with
// kPermissionDenied. Calls on one TcpStore are serialized (one connection); give each thread its own
// store when threads must wait independently.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "distributed/store/store.h"
#include "distributed/store/tcp_store_server.h"
#include "distributed/store/wire.h"

namespace gradflow::distributed {

struct TcpStoreOptions {
  std::string host = "127.0.0.1";  // where the server listens (is_server) or is reached (clients)
  uint16_t port = 0;               // 0 with is_server: pick a free port, read it back with port()
  bool is_server = false;          // rank 0: also run the server in this process
  std::string job_token;           // every client must present the server's token
  Store::Timeout timeout = Store::kDefaultTimeout;                  // get() and wait() default
  Store::Timeout connect_timeout = std::chrono::seconds(60);        // how long to retry connecting
};

class TcpStore : public Store {
 public:
  // Starts the server when options.is_server, then connects (retrying until connect_timeout) and shakes
  // hands. kDeadlineExceeded when nothing accepted in time, kPermissionDenied when the server refused the
  // token, kUnavailable when the server address cannot be bound.
  static absl::StatusOr<std::unique_ptr<TcpStore>> create(const TcpStoreOptions& options);
  // Closes the connection; stops the server if this store runs one.
  ~TcpStore() override;

  // The port the server listens on.
  uint16_t port() const { return port_; }

  absl::Status set(const std::string& key, const std::string& value) override;
  using Store::get;
  absl::StatusOr<std::string> get(const std::string& key, Timeout timeout) override;
  absl::StatusOr<int64_t> add(const std::string& key, int64_t delta) override;
  using Store::wait;
  absl::Status wait(const std::vector<std::string>& keys, Timeout timeout) override;
  absl::StatusOr<std::string> compare_set(const std::string& key, const std::string& expected,
                                          const std::string& desired) override;
  absl::StatusOr<bool> check(const std::vector<std::string>& keys) override;
  absl::StatusOr<bool> delete_key(const std::string& key) override;

 private:
  TcpStore(const TcpStoreOptions& options, std::unique_ptr<TcpStoreServer> server, int fd, uint16_t port);
  // Sends one request frame and returns the reply payload, waiting up to wait (plus a margin for the
  // server's own deadline). Any I/O failure breaks the connection for good.
  absl::StatusOr<std::string> call(const std::string& what, std::string request, Timeout wait);
  std::string address() const;

  std::unique_ptr<TcpStoreServer> server_;  // declared first: destroyed after the connection closes
  std::string host_;
  uint16_t port_;
  std::mutex mu_;  // one request in flight on fd_
  int fd_;
  bool broken_ = false;
};

}  // namespace gradflow::distributed
