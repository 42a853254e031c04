// WorkImpl: the Work of one op, completed once by finish() or fail(), whichever comes first (an engine
// returning late after the watchdog failed the op changes nothing).
//
// Completing takes no lock unless a thread is waiting: most ops have run inline by the time anyone waits,
// and a small all-reduce should cost what the engine's does.
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

// An op may keep its own state in a subclass (one allocation for the op and its Work).
class WorkImpl : public Work, public std::enable_shared_from_this<WorkImpl> {
 public:
  WorkImpl(Timeout timeout, bool collective) : timeout_(timeout), collective_(collective) {}

  void wait() override { wait(timeout_); }
  void wait(Timeout timeout) override;
  bool completed() const override;
  const std::vector<Tensor>& result() override;

  // Returns false when the Work had already completed.
  bool finish(std::vector<Tensor> result);
  bool fail(const CollectiveError& error);

 protected:
  // Makes a completed Work pending again, for its next op. Only for a Work no one else holds (its
  // shared_ptr's use_count is 1 and cannot grow meanwhile).
  void reset(Timeout timeout) {
    timeout_ = timeout;
    error_.reset();
    state_.store(kPending, std::memory_order_relaxed);
  }

 private:
  friend class OpRunner;
  // Set by the runner when it numbers the op, before anyone can wait for it.
  void attach(const std::shared_ptr<WorkTimeoutListener>& listener, int64_t seq) {
    // A reused Work keeps its runner's listener: no reference count to touch.
    if (listener.get() != listener_raw_) listener_ = listener, listener_raw_ = listener.get();
    seq_ = seq;
  }
  // Claims the right to complete (one of finish and fail wins), then publishes and wakes waiters.
  bool claim();
  void publish();

  enum State : int { kPending, kCompleting, kDone };
  Timeout timeout_;
  const bool collective_;
  std::weak_ptr<WorkTimeoutListener> listener_;
  const WorkTimeoutListener* listener_raw_ = nullptr;  // what listener_ was made from
  int64_t seq_ = 0;
  // kDone (release) once result_ or error_ is final; read with acquire, without the lock.
  std::atomic<int> state_{kPending};
  // Threads inside wait()'s slow path; a completer that sees none skips the lock and the notify.
  std::atomic<int> waiters_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<CollectiveError> error_;
  std::vector<Tensor> result_;
};

}  // namespace gradflow::distributed
