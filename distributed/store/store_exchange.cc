#include "distributed/store/store_exchange.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/status/status.h"
#include "core/tensor/error.h"

namespace gradflow::distributed {
namespace {

using Clock = std::chrono::steady_clock;

std::string key_of(const std::string& tag, int rank) { return str_cat(tag, "/", rank); }

// Polls until done() says yes, the deadline passes or `cancelled` gives a reason; done() may fail (the
// store's error).
template <typename Done>
absl::Status poll_until(Clock::time_point deadline, const std::function<std::string()>& cancelled,
                        const std::string& tag, Done done) {
  auto pause = std::chrono::milliseconds(1);
  while (true) {
    absl::StatusOr<bool> ready = done();
    if (!ready.ok()) return ready.status();
    if (*ready) return absl::OkStatus();
    if (cancelled) {
      if (std::string why = cancelled(); !why.empty()) {
        return absl::AbortedError(str_cat("store exchange \"", tag, "\" given up: ", why));
      }
    }
    if (Clock::now() >= deadline) return absl::DeadlineExceededError("");
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

std::string ranks_list(const std::vector<int>& ranks) {
  std::string out;
  for (int r : ranks) out += str_cat(out.empty() ? "" : ", ", r);
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> exchange_through_store(Store& store, const std::string& tag, int rank,
                                                                int size, const std::string& mine,
                                                                Store::Timeout timeout,
                                                                const std::function<std::string()>& cancelled) {
  const Clock::time_point deadline = Clock::now() + timeout;
  if (absl::Status s = store.set(key_of(tag, rank), mine); !s.ok()) return s;
  std::vector<std::string> keys;
  for (int r = 0; r < size; ++r) keys.push_back(key_of(tag, r));
  absl::Status arrived = poll_until(deadline, cancelled, tag, [&] { return store.check(keys); });
  if (absl::IsDeadlineExceeded(arrived)) {
    std::vector<int> missing;
    for (int r = 0; r < size; ++r) {
      absl::StatusOr<bool> there = store.check({keys[static_cast<size_t>(r)]});
      if (there.ok() && !*there) missing.push_back(r);
    }
    return absl::DeadlineExceededError(str_cat("store exchange \"", tag, "\": rank(s) ", ranks_list(missing),
                                               " did not arrive within ", timeout.count(), " ms"));
  }
  if (!arrived.ok()) return arrived;
  std::vector<std::string> all;
  for (const std::string& key : keys) {
    absl::StatusOr<std::string> value = store.get(key, std::chrono::seconds(5))  /* set: check() saw it */;
    if (!value.ok()) return value.status();
    all.push_back(std::move(*value));
  }
  const std::string read = str_cat(tag, "/read");
  absl::StatusOr<int64_t> readers = store.add(read, 1);
  if (!readers.ok()) return readers.status();
  if (rank != 0) return all;
  absl::Status done = poll_until(deadline, cancelled, tag, [&]() -> absl::StatusOr<bool> {
    absl::StatusOr<int64_t> n = store.add(read, 0);
    if (!n.ok()) return n.status();
    return *n >= size;
  });
  if (absl::IsDeadlineExceeded(done)) {
    return absl::DeadlineExceededError(str_cat("store exchange \"", tag, "\": not every rank read the values within ",
                                               timeout.count(), " ms"));
  }
  if (!done.ok()) return done;
  for (const std::string& key : keys) {
    if (absl::StatusOr<bool> gone = store.delete_key(key); !gone.ok()) return gone.status();
  }
  if (absl::StatusOr<bool> gone = store.delete_key(read); !gone.ok()) return gone.status();
  return all;
}

}  // namespace gradflow::distributed
