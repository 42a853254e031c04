// TcpStoreServer: the server half of TcpStore, run by rank 0. One thread serves every client with poll()
// on a listening socket; the keys live in its memory. Clients must open with a handshake carrying the job
// token; a wrong token gets a refusal and the connection is closed.
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "distributed/store/wire.h"

namespace gradflow::distributed {

class TcpStoreServer {
 public:
  // Binds host:port (port 0 picks a free one) and starts serving. kUnavailable when the address cannot be
  // bound (in use, not local), kInvalidArgument when host does not resolve.
  static absl::StatusOr<std::unique_ptr<TcpStoreServer>> start(const std::string& host, uint16_t port,
                                                               std::string job_token);
  // Stops the serving thread and closes every connection: clients waiting on it fail with kUnavailable.
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  // The port it listens on (the one picked when started with port 0).
  uint16_t port() const { return port_; }

 private:
  struct Conn {
    bool authenticated = false;
    bool close_after_write = false;
    std::string in;   // bytes received, not yet a whole frame
    std::string out;  // bytes to send
  };
  // A get or wait that could not be answered yet.
  struct Waiter {
    int fd;
    wire::Op op;
    std::vector<std::string> keys;
    wire::Clock::time_point deadline;
  };

  TcpStoreServer(int listen_fd, int wake_read, int wake_write, uint16_t port, std::string job_token);
  void run();
  void accept_all();
  void read_from(int fd, Conn& conn);
  void write_to(int fd, Conn& conn);
  void close_conn(int fd);
  // Handles one request payload from fd; returns false when the connection must close.
  bool handle(int fd, Conn& conn, std::string_view payload);
  void handle_request(int fd, Conn& conn, wire::Op op, wire::Reader& in);
  void handle_wait(int fd, Conn& conn, wire::Op op, wire::Reader& in);  // get and wait
  void handle_add(Conn& conn, wire::Reader& in);
  void handle_compare_set(Conn& conn, wire::Reader& in);
  bool all_present(const std::vector<std::string>& keys) const;
  void reply_waiter(const Waiter& w, wire::Reply reply);
  void on_key_set();
  void expire_waiters(wire::Clock::time_point now);
  int poll_timeout_ms(wire::Clock::time_point now) const;

  int listen_fd_;
  int wake_read_;
  int wake_write_;
  uint16_t port_;
  std::string job_token_;
  std::unordered_map<int, Conn> conns_;
  std::map<std::string, std::string> data_;
  std::list<Waiter> waiters_;
  std::thread thread_;  // last: started after everything it reads
};

}  // namespace gradflow::distributed
