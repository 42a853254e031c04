// BatchPrefetcher: runs a batch source one batch ahead on a background thread, so that gathering the
// next batch (fit over tensors picks shuffled rows: random reads that miss the caches) overlaps the
// current step, as Keras' fit prefetches batches of arrays. Batches come out in the source's order;
// an exception from the source comes out of the call that would have returned its batch. The thread's
// own ops run on one OpenMP thread: the training step has the cores.
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "core/tensor/tensor.h"

namespace gradflow {

class BatchPrefetcher {
 public:
  using Batch = std::optional<std::pair<Tensor, Tensor>>;

  explicit BatchPrefetcher(std::function<Batch()> source) : source_(std::move(source)) {
    worker_ = std::thread([this] { run(); });
  }
  // Waits for a batch being made (the source is not interrupted), then ends the thread.
  ~BatchPrefetcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  // The source's next batch (nullopt once it has ended, and on every call after); asks for the one
  // after it.
  Batch operator()() {
    std::unique_lock<std::mutex> lock(mu_);
    if (drained_) return std::nullopt;
    cv_.wait(lock, [&] { return ready_; });
    ready_ = false;
    if (error_) {
      drained_ = true;
      std::rethrow_exception(std::exchange(error_, nullptr));
    }
    Batch batch = std::move(slot_);
    slot_.reset();
    drained_ = !batch;
    lock.unlock();
    cv_.notify_all();
    return batch;
  }

 private:
  void run();

  std::function<Batch()> source_;
  std::mutex mu_;
  std::condition_variable cv_;
  Batch slot_;                  // the batch made ahead, valid while ready_
  std::exception_ptr error_;    // what the source threw instead, valid while ready_
  bool ready_ = false;
  bool ended_ = false;    // the source has ended (or failed): nothing more to make
  bool drained_ = false;  // the consumer has had the end (or the error)
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace gradflow
