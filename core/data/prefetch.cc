// prefetch: one background thread runs the input ahead of the consumer into a bounded queue.
//
// Shutdown: the destructor sets `cancelled_` and wakes the producer, which exits at its next wait, so a
// producer blocked on a full queue ends at once and one inside the input's next() ends when that returns.
// Errors from the input are queued in order and rethrown by the consumer's next().
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "core/data/internal.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace data_internal {
namespace {

class PrefetchIterator : public IteratorImpl {
 public:
  PrefetchIterator(const DatasetNode& input, int64_t capacity, const State* state) : capacity_(capacity) {
    if (state != nullptr) {
      check_state(*state, "prefetch");
      for (const State& r : state->at("buffer")) buffer_.push_back(result_from_state(r));
      input_done_ = state->at("input_done").get<bool>();
    }
    input_ = restore_input(input, state, "input");
    producer_ = std::thread([this] { produce(); });
  }

  ~PrefetchIterator() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
    }
    cv_.notify_all();
    producer_.join();
  }

  std::optional<Element> next() override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !buffer_.empty() || input_done_; });
    if (buffer_.empty()) return std::nullopt;
    Result r = std::move(buffer_.front());
    buffer_.pop_front();
    lock.unlock();
    cv_.notify_all();
    return unwrap(std::move(r));
  }

  State save() override {
    std::unique_lock<std::mutex> lock(mu_);
    paused_ = true;
    cv_.wait(lock, [&] { return !busy_; });
    struct Resume {
      PrefetchIterator* self;
      ~Resume() {
        self->paused_ = false;
        self->cv_.notify_all();
      }
    } resume{this};
    State s = new_state("prefetch");
    s["input"] = input_->save();
    s["input_done"] = input_done_;
    State buffer = State::array();
    for (const Result& r : buffer_) buffer.push_back(result_to_state(r));
    s["buffer"] = std::move(buffer);
    return s;
  }

 private:
  void produce() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [&] {
        return cancelled_ || (!paused_ && !input_done_ && static_cast<int64_t>(buffer_.size()) < capacity_);
      });
      if (cancelled_) return;
      busy_ = true;
      lock.unlock();
      Result r = next_result(*input_);
      lock.lock();
      busy_ = false;
      if (r.element || r.error) {
        buffer_.push_back(std::move(r));
      } else {
        input_done_ = true;
      }
      cv_.notify_all();
    }
  }

  const int64_t capacity_;
  std::unique_ptr<IteratorImpl> input_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Result> buffer_;
  bool busy_ = false, input_done_ = false, paused_ = false, cancelled_ = false;
  std::thread producer_;  // last: started after everything it uses exists
};

class PrefetchNode : public DatasetNode {
 public:
  PrefetchNode(NodePtr input, int64_t capacity) : input_(std::move(input)), capacity_(capacity) {}
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    return std::make_unique<PrefetchIterator>(*input_, capacity_, state);
  }
  int64_t cardinality() const override { return input_->cardinality(); }
  std::string_view op() const override { return "prefetch"; }
  std::vector<NodePtr> inputs() const override { return {input_}; }
  NodePtr with_inputs(std::vector<NodePtr> in) const override {
    return std::make_shared<PrefetchNode>(in.at(0), capacity_);
  }

 private:
  NodePtr input_;
  int64_t capacity_;
};

}  // namespace
}  // namespace data_internal

Dataset Dataset::prefetch(int64_t buffer_size) const {
  GF_CHECK(buffer_size >= 1 || buffer_size == kAutotune, ValueError,
           "prefetch: buffer_size must be >= 1 or kAutotune, got ", buffer_size);
  int64_t capacity =
      buffer_size == kAutotune ? std::clamp<int64_t>(data_internal::autotune_parallelism(), 2, 16) : buffer_size;
  return Dataset(std::make_shared<data_internal::PrefetchNode>(node(), capacity));
}

}  // namespace gradflow
