#include "distributed/comm/work.h"

namespace gradflow::distributed {

void WorkImpl::wait(Timeout timeout) {
  if (done_.load(std::memory_order_acquire)) {
    if (error_) throw *error_;
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (!done_ && !cv_.wait_for(lock, timeout, [&] { return done_.load(); })) {
    lock.unlock();
    if (std::shared_ptr<WorkTimeoutListener> listener = listener_.lock()) {
      listener->on_wait_timeout(seq_, collective_);
    } else {
      fail(CollectiveError(CollectiveFailure::kAborted, "the op's communicator was destroyed before it completed"));
    }
    lock.lock();
    cv_.wait(lock, [&] { return done_.load(); });
  }
  if (error_) throw *error_;
}

bool WorkImpl::completed() const { return done_.load(std::memory_order_acquire); }

const std::vector<Tensor>& WorkImpl::result() {
  wait();
  return result_;
}

bool WorkImpl::finish(std::vector<Tensor> result) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return false;
    result_ = std::move(result);
    done_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
  return true;
}

bool WorkImpl::fail(const CollectiveError& error) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return false;
    error_ = error;
    done_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
  return true;
}

}  // namespace gradflow::distributed
