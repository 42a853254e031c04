// interleave: TF's cycle over cycle_length open input elements, block_length elements from each in turn.
//
// The consumer runs TF's loop (InterleaveDatasetOp) and alone opens and closes slots. With workers, each
// open slot's iterator is read ahead into a per-slot buffer by a pool of threads that serve the slots
// nearest the consumer's position first; the consumer takes from the buffers in the same order, so the
// output is the sequential order. A slot's iterator is only ever used by one thread at a time (`busy`).
//
// State: the input's state, the cycle position, and per open slot its input element (fn is called again
// on it when restoring), its iterator's state and any read-ahead elements.
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "core/data/internal.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace data_internal {
namespace {

using InterleaveFn = std::function<Dataset(const Element&)>;

// `it` is declared after `dataset` so it is destroyed first: its threads may still read the nodes.
struct Slot {
  std::optional<Element> input;    // the input element the slot's dataset came from
  std::optional<Dataset> dataset;  // keeps the dataset's nodes alive while its iterator runs
  std::unique_ptr<IteratorImpl> it;  // null: the slot is empty
  std::deque<Result> buffer;       // read ahead by workers
  bool busy = false;               // a worker is inside it->next()
  bool exhausted = false;          // it->next() returned the end (seen by a worker)
};

class InterleaveIterator : public IteratorImpl {
 public:
  InterleaveIterator(const DatasetNode& input, const InterleaveFn& fn, int64_t cycle_length, int64_t block_length,
                     int64_t workers, const State* state)
      : fn_(fn), block_length_(block_length), slots_(cycle_length) {
    if (state != nullptr) {
      check_state(*state, "interleave");
      restore(*state);
    }
    input_ = restore_input(input, state, "input");
    for (int64_t i = 0; i < workers; ++i) workers_.emplace_back([this] { work(); });
  }

  ~InterleaveIterator() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : workers_) t.join();
  }

  std::optional<Element> next() override {
    while (!end_of_input_ || num_open_ > 0) {
      Slot& slot = slots_[cycle_index_];
      if (slot.it) {
        Result r = take(slot);
        std::lock_guard<std::mutex> lock(mu_);
        if (r.element || r.error) {
          if (++block_index_ == block_length_) next_in_cycle();
          return unwrap(std::move(r));
        }
        slot.it.reset();  // before its dataset goes
        slot = Slot();
        --num_open_;
        next_in_cycle();
      } else if (!end_of_input_) {
        std::optional<Element> in = input_->next();
        if (!in) {
          end_of_input_ = true;
          continue;
        }
        Dataset dataset = fn_(*in);
        std::unique_ptr<IteratorImpl> it = dataset.node()->make_iterator(nullptr);
        std::lock_guard<std::mutex> lock(mu_);
        open(slot, std::move(*in), std::move(dataset), std::move(it));
      } else {
        std::lock_guard<std::mutex> lock(mu_);
        next_in_cycle();
      }
    }
    return std::nullopt;
  }

  State save() override {
    std::unique_lock<std::mutex> lock(mu_);
    paused_ = true;
    cv_.wait(lock, [&] {
      for (const Slot& s : slots_) {
        if (s.busy) return false;
      }
      return true;
    });
    struct Resume {
      InterleaveIterator* self;
      ~Resume() {
        self->paused_ = false;
        self->cv_.notify_all();
      }
    } resume{this};
    State s = new_state("interleave");
    s["input"] = input_->save();
    s["cycle_index"] = cycle_index_;
    s["block_index"] = block_index_;
    s["end_of_input"] = end_of_input_;
    State slots = State::array();
    for (const Slot& slot : slots_) {
      if (!slot.it) {
        slots.push_back(nullptr);
        continue;
      }
      State saved = State::object();
      saved["input"] = element_to_state(*slot.input);
      saved["iterator"] = slot.it->save();
      saved["exhausted"] = slot.exhausted;
      State buffer = State::array();
      for (const Result& r : slot.buffer) buffer.push_back(result_to_state(r));
      saved["buffer"] = std::move(buffer);
      slots.push_back(std::move(saved));
    }
    s["slots"] = std::move(slots);
    return s;
  }

 private:
  void restore(const State& s) {
    cycle_index_ = s.at("cycle_index").get<int64_t>();
    block_index_ = s.at("block_index").get<int64_t>();
    end_of_input_ = s.at("end_of_input").get<bool>();
    const State& slots = s.at("slots");
    if (slots.size() != slots_.size() || cycle_index_ < 0 || cycle_index_ >= static_cast<int64_t>(slots_.size())) {
      throw ValueError(str_cat("restore: interleave state has ", slots.size(), " slots at cycle position ",
                               cycle_index_, " but cycle_length is ", slots_.size()));
    }
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots[i].is_null()) continue;
      Element in = element_from_state(slots[i].at("input"));
      Dataset dataset = fn_(in);
      std::unique_ptr<IteratorImpl> it = dataset.node()->make_iterator(&slots[i].at("iterator"));
      open(slots_[i], std::move(in), std::move(dataset), std::move(it));
      slots_[i].exhausted = slots[i].at("exhausted").get<bool>();
      for (const State& r : slots[i].at("buffer")) slots_[i].buffer.push_back(result_from_state(r));
    }
  }

  void open(Slot& slot, Element in, Dataset dataset, std::unique_ptr<IteratorImpl> it) {
    slot.input = std::move(in);
    slot.dataset = std::move(dataset);
    slot.it = std::move(it);
    ++num_open_;
    cv_.notify_all();
  }

  void next_in_cycle() {
    block_index_ = 0;
    cycle_index_ = (cycle_index_ + 1) % static_cast<int64_t>(slots_.size());
  }

  // The slot's next element or error; neither at its end.
  Result take(Slot& slot) {
    if (workers_.empty()) return next_result(*slot.it);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !slot.buffer.empty() || slot.exhausted; });
    if (slot.buffer.empty()) return Result();
    Result r = std::move(slot.buffer.front());
    slot.buffer.pop_front();
    lock.unlock();
    cv_.notify_all();
    return r;
  }

  // The slot a worker should read next: the first from the consumer's position that has room.
  Slot* pick() {
    for (size_t k = 0; k < slots_.size(); ++k) {
      Slot& s = slots_[(cycle_index_ + k) % slots_.size()];
      if (s.it && !s.busy && !s.exhausted && static_cast<int64_t>(s.buffer.size()) < block_length_) return &s;
    }
    return nullptr;
  }

  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      Slot* slot = nullptr;
      cv_.wait(lock, [&] { return cancelled_ || (!paused_ && (slot = pick()) != nullptr); });
      if (cancelled_) return;
      slot->busy = true;
      IteratorImpl* it = slot->it.get();
      lock.unlock();
      Result r = next_result(*it);
      lock.lock();
      slot->busy = false;
      if (r.element || r.error) {
        slot->buffer.push_back(std::move(r));
      } else {
        slot->exhausted = true;
      }
      cv_.notify_all();
    }
  }

  const InterleaveFn& fn_;
  const int64_t block_length_;
  std::unique_ptr<IteratorImpl> input_;  // used by the consumer only
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Slot> slots_;  // cycle_length of them; never resized
  int64_t cycle_index_ = 0, block_index_ = 0, num_open_ = 0;
  bool end_of_input_ = false, paused_ = false, cancelled_ = false;
  std::vector<std::thread> workers_;  // last: started after everything they use exists
};

class InterleaveNode : public DatasetNode {
 public:
  InterleaveNode(NodePtr input, InterleaveFn fn, int64_t cycle_length, int64_t block_length, int64_t workers)
      : input_(std::move(input)),
        fn_(std::move(fn)),
        cycle_length_(cycle_length),
        block_length_(block_length),
        workers_(workers) {}
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    return std::make_unique<InterleaveIterator>(*input_, fn_, cycle_length_, block_length_, workers_, state);
  }
  int64_t cardinality() const override { return Dataset::kUnknown; }
  std::string_view op() const override { return "interleave"; }
  std::vector<NodePtr> inputs() const override { return {input_}; }
  NodePtr with_inputs(std::vector<NodePtr> in) const override {
    return std::make_shared<InterleaveNode>(in.at(0), fn_, cycle_length_, block_length_, workers_);
  }

 private:
  NodePtr input_;
  InterleaveFn fn_;
  int64_t cycle_length_, block_length_, workers_;
};

}  // namespace
}  // namespace data_internal

Dataset Dataset::interleave(std::function<Dataset(const Element&)> fn, InterleaveOptions options) const {
  GF_CHECK(fn != nullptr, ValueError, "interleave: empty function");
  GF_CHECK(options.cycle_length >= 1 || options.cycle_length == kAutotune, ValueError,
           "interleave: cycle_length must be >= 1 or kAutotune, got ", options.cycle_length);
  GF_CHECK(options.block_length >= 1, ValueError, "interleave: block_length must be >= 1, got ",
           options.block_length);
  GF_CHECK(options.num_parallel_calls >= 1 || options.num_parallel_calls == kAutotune, ValueError,
           "interleave: num_parallel_calls must be >= 1 or kAutotune, got ", options.num_parallel_calls);
  int64_t cycle = options.cycle_length == kAutotune ? data_internal::autotune_parallelism() : options.cycle_length;
  int64_t calls =
      options.num_parallel_calls == kAutotune ? data_internal::autotune_parallelism() : options.num_parallel_calls;
  int64_t workers = calls <= 1 ? 0 : std::min(calls, cycle);
  return Dataset(std::make_shared<data_internal::InterleaveNode>(node(), std::move(fn), cycle, options.block_length,
                                                                 workers));
}

}  // namespace gradflow
