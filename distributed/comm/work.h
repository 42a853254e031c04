// WorkImpl: the Work of one op, completed once by finish() or fail(), whichever comes first (an engine
// returning late after the watchdog failed the op changes nothing).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "distributed/comm/communicator.h"

namespace gradflow::distributed {

// Told when a wait() runs out of time before the op completes; it must fail the Work (the communicator
// turns it into a timeout of the op). Called without the Work's lock held.
struct WorkTimeoutListener {
  virtual ~WorkTimeoutListener() = default;
  virtual void on_wait_timeout(int64_t seq, bool collective) = 0;
};

class WorkImpl : public Work, public std::enable_shared_from_this<WorkImpl> {
 public:
  WorkImpl(Timeout timeout, std::weak_ptr<WorkTimeoutListener> listener, int64_t seq, bool collective)
      : timeout_(timeout), listener_(std::move(listener)), seq_(seq), collective_(collective) {}

  void wait() override { wait(timeout_); }
  void wait(Timeout timeout) override;
  bool completed() const override;
  const std::vector<Tensor>& result() override;

  // Returns false when the Work had already completed.
  bool finish(std::vector<Tensor> result);
  bool fail(const CollectiveError& error);

 private:
  const Timeout timeout_;
  std::weak_ptr<WorkTimeoutListener> listener_;
  const int64_t seq_;
  const bool collective_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Set (release) under mu_ once result_ or error_ is final: a completed op is waited for and read
  // without the lock (most ops have run inline by the time anyone waits).
  std::atomic<bool> done_{false};
  std::optional<CollectiveError> error_;
  std::vector<Tensor> result_;
};

}  // namespace gradflow::distributed
