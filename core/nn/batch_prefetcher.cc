#include "core/nn/batch_prefetcher.h"

#include <omp.h>

namespace gradflow {

void BatchPrefetcher::run() {
  omp_set_num_threads(1);  // this thread's own setting: a large gather here must not start a team
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || ended_ || !ready_; });
    if (stop_ || ended_) return;
    lock.unlock();
    Batch batch;
    std::exception_ptr error;
    try {
      batch = source_();
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    slot_ = std::move(batch);
    error_ = error;
    ready_ = true;
    // Nothing comes after the end or an error: the thread is done.
    if (!slot_ || error_) ended_ = true;
    cv_.notify_all();
  }
}

}  // namespace gradflow
