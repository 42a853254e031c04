// shuffle, as TF does it: fill a buffer, emit a random slot, refill that slot from the input.
//
// Random slots come from Philox (core/tensor/philox.h) keyed by the seed mixed with the pass number, and
// counted by draws, so (pass, draws, buffer, input state) is the whole state. Each new pass takes the
// node's next pass number; restoring sets the counter to the restored pass + 1, so the passes after it
// (the next round of a repeat above, the next epoch's iterator) get the numbers they had in the saved run.
#include <algorithm>
#include <atomic>
#include <vector>

#include "core/data/internal.h"
#include "core/tensor/error.h"
#include "core/tensor/philox.h"
#include "core/tensor/random.h"

namespace gradflow {
namespace data_internal {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

class ShuffleIterator : public IteratorImpl {
 public:
  ShuffleIterator(const DatasetNode& input, int64_t buffer_size, uint64_t seed,
                  uint64_t stream, uint64_t pass, const State* state);
  std::optional<Element> next() override;
  State save() override;

 private:
  // Uniform in [0, n): the high half of a 64-bit draw times n.
  size_t random_slot(size_t n) {
    philox::Uint4 b = philox::block(key_, stream_, draws_++);
    uint64_t bits = static_cast<uint64_t>(b.y) << 32 | b.x;
    return static_cast<size_t>((static_cast<unsigned __int128>(bits) * n) >> 64);
  }

  int64_t buffer_size_;
  uint64_t stream_, pass_, key_;
  uint64_t draws_ = 0;
  bool input_done_ = false;
  std::vector<Element> buffer_;
  std::unique_ptr<IteratorImpl> input_;
};

class ShuffleNode : public DatasetNode {
 public:
  ShuffleNode(NodePtr input, int64_t buffer_size, uint64_t seed, uint64_t stream, bool reshuffle)
      : input_(std::move(input)), buffer_size_(buffer_size), seed_(seed), stream_(stream), reshuffle_(reshuffle) {}
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    uint64_t pass = 0;
    if (state != nullptr) {
      check_state(*state, op());
      pass = state->at("pass").get<uint64_t>();
      // Later passes continue from here, as they did after this pass in the saved run.
      passes_.store(pass + 1);
    } else if (reshuffle_) {
      pass = passes_.fetch_add(1);
    }
    return std::make_unique<ShuffleIterator>(*input_, buffer_size_, seed_, stream_, pass, state);
  }
  int64_t cardinality() const override { return input_->cardinality(); }
  std::string_view op() const override { return "shuffle"; }
  std::vector<NodePtr> inputs() const override { return {input_}; }
  NodePtr with_inputs(std::vector<NodePtr> in) const override {
    return std::make_shared<ShuffleNode>(in.at(0), buffer_size_, seed_, stream_, reshuffle_);
  }

 private:
  NodePtr input_;
  int64_t buffer_size_;
  uint64_t seed_, stream_;
  bool reshuffle_;
  mutable std::atomic<uint64_t> passes_{0};  // how many passes have started: the one mutable part
};

ShuffleIterator::ShuffleIterator(const DatasetNode& input, int64_t buffer_size, uint64_t seed,
                                 uint64_t stream, uint64_t pass, const State* state)
    : buffer_size_(buffer_size), stream_(stream), pass_(pass), key_(splitmix64(seed ^ splitmix64(pass))) {
  if (state != nullptr) {
    draws_ = state->at("draws").get<uint64_t>();
    input_done_ = state->at("input_done").get<bool>();
    for (const State& e : state->at("buffer")) buffer_.push_back(element_from_state(e));
    if (static_cast<int64_t>(buffer_.size()) > buffer_size_) {
      throw ValueError(str_cat("restore: shuffle state holds ", buffer_.size(), " elements but buffer_size is ",
                               buffer_size_));
    }
  }
  input_ = restore_input(input, state, "input");
}

// The buffer is refilled before the draw rather than after, so an input error surfaces before any
// element leaves the buffer and none is lost with it; the order is a uniform shuffle either way.
std::optional<Element> ShuffleIterator::next() {
  while (!input_done_ && static_cast<int64_t>(buffer_.size()) < buffer_size_) {
    std::optional<Element> e = input_->next();
    if (!e) {
      input_done_ = true;
    } else {
      buffer_.push_back(std::move(*e));
    }
  }
  if (buffer_.empty()) return std::nullopt;
  size_t slot = random_slot(buffer_.size());
  Element out = std::move(buffer_[slot]);
  if (slot + 1 != buffer_.size()) buffer_[slot] = std::move(buffer_.back());
  buffer_.pop_back();
  return out;
}

State ShuffleIterator::save() {
  State s = new_state("shuffle");
  s["pass"] = pass_;
  s["draws"] = draws_;
  s["input_done"] = input_done_;
  State buffer = State::array();
  for (const Element& e : buffer_) buffer.push_back(element_to_state(e));
  s["buffer"] = std::move(buffer);
  s["input"] = input_->save();
  return s;
}

}  // namespace
}  // namespace data_internal

Dataset Dataset::shuffle(int64_t buffer_size, std::optional<uint64_t> seed, bool reshuffle_each_iteration) const {
  GF_CHECK(buffer_size >= 1, ValueError, "shuffle: buffer_size must be >= 1, got ", buffer_size);
  RandomStream rs = take_random_stream(seed);
  return Dataset(
      std::make_shared<data_internal::ShuffleNode>(node(), buffer_size, rs.seed, rs.stream, reshuffle_each_iteration));
}

}  // namespace gradflow
