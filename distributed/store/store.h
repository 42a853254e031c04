// Store: a small key-value store that the ranks of a job use to find each other (rendezvous), modelled on
// PyTorch c10d's Store. Values are byte strings; add() keeps a decimal integer in the value.
//
//   auto store = TcpStore::create({.host = "10.0.0.1", .port = 29500, .is_server = rank == 0,
//                                  .job_token = token});
//   (*store)->set("addr/" + std::to_string(rank), my_address);
//   absl::StatusOr<std::string> peer = (*store)->get("addr/0");   // waits up to the store's timeout
//
// Every waiting call takes a timeout (or uses the store's default) and fails with kDeadlineExceeded naming
// the key(s) and the timeout. A store whose server has gone away fails with kUnavailable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gradflow::distributed {

class Store {
 public:
  using Timeout = std::chrono::milliseconds;
  static constexpr Timeout kDefaultTimeout = std::chrono::minutes(5);

  explicit Store(Timeout timeout = kDefaultTimeout) : timeout_(timeout) {}
  virtual ~Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Sets key to value, replacing any previous value, and wakes whoever waits for key.
  virtual absl::Status set(const std::string& key, const std::string& value) = 0;

  // Returns key's value, waiting up to timeout for some rank to set it.
  virtual absl::StatusOr<std::string> get(const std::string& key, Timeout timeout) = 0;
  absl::StatusOr<std::string> get(const std::string& key) { return get(key, timeout_); }

  // Adds delta to the integer in key (a missing key counts as 0) and returns the new value. Fails with
  // kInvalidArgument when key holds something that is not a decimal integer.
  virtual absl::StatusOr<int64_t> add(const std::string& key, int64_t delta) = 0;

  // Waits up to timeout until every key in keys is set.
  virtual absl::Status wait(const std::vector<std::string>& keys, Timeout timeout) = 0;
  absl::Status wait(const std::vector<std::string>& keys) { return wait(keys, timeout_); }

  // Atomically: when key holds expected (or is missing and expected is empty) sets it to desired and
  // returns desired; otherwise leaves it and returns its current value (expected when it is missing).
  virtual absl::StatusOr<std::string> compare_set(const std::string& key, const std::string& expected,
                                                  const std::string& desired) = 0;

  // Returns whether every key in keys is set, without waiting.
  virtual absl::StatusOr<bool> check(const std::vector<std::string>& keys) = 0;

  // Removes key; returns whether it was there.
  virtual absl::StatusOr<bool> delete_key(const std::string& key) = 0;

  // The timeout that get() and wait() use when given none.
  Timeout timeout() const { return timeout_; }
  void set_timeout(Timeout timeout) { timeout_ = timeout; }

 private:
  Timeout timeout_;
};

namespace store_internal {
// "get(\"k\"): key \"k\" was not set within 100 ms" and the like, for every store's timeouts.
absl::Status timeout_error(const char* op, const std::vector<std::string>& keys, Store::Timeout timeout);
// Parses a value written by add(); kInvalidArgument naming key when it is not a decimal integer.
absl::StatusOr<int64_t> parse_counter(const std::string& key, const std::string& value);
// compare_set's rule on a value that may be missing (present == false).
bool compare_set_applies(bool present, const std::string& current, const std::string& expected);
}  // namespace store_internal

}  // namespace gradflow::distributed
