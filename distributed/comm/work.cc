#include "distributed/comm/work.h"

namespace gradflow::distributed {

void WorkImpl::wait(Timeout timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  // Most ops have completed by the time they are waited for (they ran inline): no clock read then.
  if (!done_ && !cv_.wait_for(lock, timeout, [&] { return done_; })) {
    lock.unlock();
    if (std::shared_ptr<WorkTimeoutListener> listener = listener_.lock()) {
      listener->on_wait_timeout(seq_, collective_);
    } else {
      fail(CollectiveError(CollectiveFailure::kAborted, "the op's communicator was destroyed before it completed"));
    }
    lock.lock();
    cv_.wait(lock, [&] { return done_; });
  }
  if (error_) throw *error_;
}

bool WorkImpl::completed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

const std::vector<Tensor>& WorkImpl::result() {
  wait();
  return result_;
}

bool WorkImpl::finish(std::vector<Tensor> result) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return false;
    done_ = true;
    result_ = std::move(result);
  }
  cv_.notify_all();
  return true;
}

bool WorkImpl::fail(const CollectiveError& error) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return false;
    done_ = true;
    error_ = error;
  }
  cv_.notify_all();
  return true;
}

}  // namespace gradflow::distributed
