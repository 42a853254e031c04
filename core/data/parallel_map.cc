// map on worker threads. Workers take turns pulling from the input (so the input iterator is never used
// by two threads at once), tag each element with its input position, and apply the function in
// parallel; the consumer takes results by position (deterministic) or as they finish.
//
// Saving pauses the workers after their in-flight calls finish, so the state is the input's state plus
// the finished results not yet consumed, and holds nothing half-done.
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "core/data/internal.h"
#include "core/tensor/error.h"

namespace gradflow::data_internal {
namespace {

class ParallelMapIterator : public IteratorImpl {
 public:
  ParallelMapIterator(const DatasetNode& input, const MapFn& fn, int64_t threads, bool deterministic,
                      const State* state)
      : fn_(fn), deterministic_(deterministic), capacity_(2 * threads) {
    if (state != nullptr) {
      check_state(*state, "map");
      for (const State& r : state->value("results", State::array())) results_[next_pull_++] = result_from_state(r);
    }
    input_ = restore_input(input, state, "input");
    for (int64_t i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }

  ~ParallelMapIterator() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

  std::optional<Element> next() override {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = results_.end();
    if (deterministic_) {
      cv_.wait(lock, [&] {
        it = results_.find(next_emit_);
        return it != results_.end() || (input_done_ && next_emit_ >= end_seq_);
      });
    } else {
      cv_.wait(lock, [&] {
        it = results_.begin();
        return it != results_.end() || (input_done_ && !pulling_ && in_flight_ == 0);
      });
    }
    if (it == results_.end()) return std::nullopt;
    Result r = std::move(it->second);
    results_.erase(it);
    ++next_emit_;
    lock.unlock();
    cv_.notify_all();  // a buffer slot is free
    return unwrap(std::move(r));
  }

  State save() override {
    std::unique_lock<std::mutex> lock(mu_);
    paused_ = true;
    cv_.wait(lock, [&] { return !pulling_ && in_flight_ == 0; });
    struct Resume {
      ParallelMapIterator* self;
      ~Resume() {
        self->paused_ = false;
        self->cv_.notify_all();
      }
    } resume{this};
    State s = new_state("map");
    s["input"] = input_->save();
    State results = State::array();
    for (const auto& [seq, r] : results_) results.push_back(result_to_state(r));
    s["results"] = std::move(results);
    return s;
  }

 private:
  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [&] {
        return cancelled_ || (!paused_ && !pulling_ && !input_done_ &&
                              in_flight_ + static_cast<int64_t>(results_.size()) < capacity_);
      });
      if (cancelled_) return;
      pulling_ = true;
      uint64_t seq = next_pull_++;
      lock.unlock();
      Result in = next_result(*input_);
      lock.lock();
      pulling_ = false;
      if (!in.element) {
        if (in.error) {
          results_[seq] = std::move(in);  // an input error keeps its place in the order
        } else {
          input_done_ = true;
          end_seq_ = seq;
        }
        cv_.notify_all();
        continue;
      }
      ++in_flight_;
      lock.unlock();
      cv_.notify_all();  // the next worker may pull while this one maps
      Result out;
      try {
        out.element = fn_(std::move(*in.element));
      } catch (...) {
        out.error = std::current_exception();
      }
      lock.lock();
      --in_flight_;
      results_[seq] = std::move(out);
      cv_.notify_all();
    }
  }

  const MapFn& fn_;
  const bool deterministic_;
  const int64_t capacity_;  // results held plus calls in flight
  std::unique_ptr<IteratorImpl> input_;

  std::mutex mu_;
  std::condition_variable cv_;  // one for all waits: consumer, workers and save
  std::map<uint64_t, Result> results_;  // by input position
  uint64_t next_pull_ = 0, next_emit_ = 0, end_seq_ = 0;
  int64_t in_flight_ = 0;
  bool pulling_ = false, input_done_ = false, paused_ = false, cancelled_ = false;
  std::vector<std::thread> workers_;  // last: started after everything they use exists
};

}  // namespace

std::unique_ptr<IteratorImpl> make_parallel_map_iterator(const DatasetNode& input, const MapFn& fn, int64_t threads,
                                                         bool deterministic, const State* state) {
  return std::make_unique<ParallelMapIterator>(input, fn, threads, deterministic, state);
}

}  // namespace gradflow::data_internal
