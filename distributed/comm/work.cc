#include "distributed/comm/work.h"

namespace gradflow::distributed {

void WorkImpl::wait(Timeout timeout) {
  if (state_.load(std::memory_order_acquire) != kDone) {
    std::unique_lock<std::mutex> lock(mu_);
    // seq_cst with publish()'s store and load: either the completer sees this waiter and notifies under
    // the lock, or this thread sees kDone below.
    waiters_.fetch_add(1);
    auto done = [&] { return state_.load() == kDone; };
    if (!cv_.wait_for(lock, timeout, done)) {
      lock.unlock();
      if (std::shared_ptr<WorkTimeoutListener> listener = listener_.lock()) {
        listener->on_wait_timeout(seq_, collective_);
      } else {
        fail(CollectiveError(CollectiveFailure::kAborted, "the op's communicator was destroyed before it completed"));
      }
      lock.lock();
      cv_.wait(lock, done);
    }
    waiters_.fetch_sub(1);
  }
  if (error_) throw *error_;
}

bool WorkImpl::completed() const { return state_.load(std::memory_order_acquire) == kDone; }

const std::vector<Tensor>& WorkImpl::result() {
  wait();
  return result_;
}

bool WorkImpl::claim() {
  int pending = kPending;
  return state_.compare_exchange_strong(pending, kCompleting, std::memory_order_acquire);
}

void WorkImpl::publish() {
  state_.store(kDone);
  if (waiters_.load() == 0) return;
  { std::lock_guard<std::mutex> lock(mu_); }  // a waiter between its check and its sleep gets the notify
  cv_.notify_all();
}

bool WorkImpl::finish(std::vector<Tensor> result) {
  if (!claim()) return false;
  result_ = std::move(result);
  publish();
  return true;
}

bool WorkImpl::fail(const CollectiveError& error) {
  if (!claim()) return false;
  error_ = error;
  publish();
  return true;
}

}  // namespace gradflow::distributed
