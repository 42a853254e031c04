// Element-wise and counting transformations: map, filter, take, skip, repeat, shard. Each iterator's
// state is its counters plus its input's state.
#include <deque>

#include "core/data/internal.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace data_internal {
namespace {

// One thread: the function runs in the consumer's next(). Results pending from a state saved by a
// parallel map come first, so a state restores whatever the thread count.
class MapIterator : public IteratorImpl {
 public:
  MapIterator(const DatasetNode& input, const MapFn& fn, const State* state) : fn_(fn) {
    if (state != nullptr) {
      check_state(*state, "map");
      for (const State& r : state->value("results", State::array())) pending_.push_back(result_from_state(r));
    }
    input_ = restore_input(input, state, "input");
  }
  std::optional<Element> next() override {
    if (!pending_.empty()) {
      Result r = std::move(pending_.front());
      pending_.pop_front();
      return unwrap(std::move(r));
    }
    std::optional<Element> e = input_->next();
    if (!e) return std::nullopt;
    return fn_(std::move(*e));
  }
  State save() override {
    State s = new_state("map");
    s["input"] = input_->save();
    State results = State::array();
    for (const Result& r : pending_) results.push_back(result_to_state(r));
    s["results"] = std::move(results);
    return s;
  }

 private:
  const MapFn& fn_;
  std::unique_ptr<IteratorImpl> input_;
  std::deque<Result> pending_;
};

class MapNode : public DatasetNode {
 public:
  MapNode(NodePtr input, MapFn fn, MapOptions options)
      : input_(std::move(input)), fn_(std::move(fn)), options_(options) {}
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    int64_t threads = options_.num_parallel_calls == kAutotune ? autotune_parallelism() : options_.num_parallel_calls;
    if (threads <= 1) return std::make_unique<MapIterator>(*input_, fn_, state);
    return make_parallel_map_iterator(*input_, fn_, threads, options_.deterministic, state);
  }
  int64_t cardinality() const override { return input_->cardinality(); }
  std::string_view op() const override { return "map"; }
  std::vector<NodePtr> inputs() const override { return {input_}; }
  NodePtr with_inputs(std::vector<NodePtr> in) const override {
    return std::make_shared<MapNode>(in.at(0), fn_, options_);
  }

 private:
  NodePtr input_;
  MapFn fn_;
  MapOptions options_;
};

class FilterIterator : public IteratorImpl {
 public:
  FilterIterator(const DatasetNode& input, const Predicate& predicate, const State* state) : predicate_(predicate) {
    if (state != nullptr) check_state(*state, "filter");
    input_ = restore_input(input, state, "input");
  }
  std::optional<Element> next() override {
    while (std::optional<Element> e = input_->next()) {
      if (predicate_(*e)) return e;
    }
    return std::nullopt;
  }
  State save() override {
    State s = new_state("filter");
    s["input"] = input_->save();
    return s;
  }

 private:
  const Predicate& predicate_;
  std::unique_ptr<IteratorImpl> input_;
};

class FilterNode : public DatasetNode {
 public:
  FilterNode(NodePtr input, Predicate predicate) : input_(std::move(input)), predicate_(std::move(predicate)) {}
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    return std::make_unique<FilterIterator>(*input_, predicate_, state);
  }
  int64_t cardinality() const override { return Dataset::kUnknown; }
  std::string_view op() const override { return "filter"; }
  std::vector<NodePtr> inputs() const override { return {input_}; }
  NodePtr with_inputs(std::vector<NodePtr> in) const override {
    return std::make_shared<FilterNode>(in.at(0), predicate_);
  }

 private:
  NodePtr input_;
  Predicate predicate_;
};

// take, skip and shard: a count of input elements consumed decides what passes.
enum class CountKind { kTake, kSkip, kShard };

class CountIterator : public IteratorImpl {
 public:
  CountIterator(std::string_view op, CountKind kind, int64_t n, int64_t index, const DatasetNode& input,
                const State* state)
      : op_(op), kind_(kind), n_(n), index_(index) {
    if (state != nullptr) {
      check_state(*state, op_);
      seen_ = state->at("seen").get<int64_t>();
    }
    input_ = restore_input(input, state, "input");
  }
  std::optional<Element> next() override {
    switch (kind_) {
      case CountKind::kTake:
        if (n_ >= 0 && seen_ >= n_) return std::nullopt;
        if (std::optional<Element> e = input_->next()) {
          ++seen_;
          return e;
        }
        return std::nullopt;
      case CountKind::kSkip:
        // skip(-1) skips everything, as in TF.
        while (n_ < 0 || seen_ < n_) {
          if (!input_->skip()) return std::nullopt;
          ++seen_;
        }
        return input_->next();
      case CountKind::kShard:
        // Another worker's elements are only skipped.
        while (seen_ % n_ != index_) {
          if (!input_->skip()) return std::nullopt;
          ++seen_;
        }
        if (std::optional<Element> e = input_->next()) {
          ++seen_;
          return e;
        }
        return std::nullopt;
    }
    return std::nullopt;
  }
  State save() override {
    State s = new_state(op_);
    s["seen"] = seen_;
    s["input"] = input_->save();
    return s;
  }

 private:
  std::string_view op_;
  CountKind kind_;
  int64_t n_, index_;
  int64_t seen_ = 0;
  std::unique_ptr<IteratorImpl> input_;
};

class CountNode : public DatasetNode {
 public:
  CountNode(CountKind kind, NodePtr input, int64_t n, int64_t index = 0)
      : kind_(kind), input_(std::move(input)), n_(n), index_(index) {}
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    return std::make_unique<CountIterator>(op(), kind_, n_, index_, *input_, state);
  }
  int64_t cardinality() const override {
    int64_t c = input_->cardinality();
    switch (kind_) {
      case CountKind::kTake:
        if (n_ < 0 || c == Dataset::kUnknown) return c;
        return c == Dataset::kInfinite ? n_ : std::min(c, n_);
      case CountKind::kSkip:
        if (c < 0) return c;
        return n_ < 0 ? 0 : std::max<int64_t>(0, c - n_);
      case CountKind::kShard:
        if (c < 0) return c;
        return c / n_ + (index_ < c % n_ ? 1 : 0);
    }
    return Dataset::kUnknown;
  }
  std::string_view op() const override {
    switch (kind_) {
      case CountKind::kTake: return "take";
      case CountKind::kSkip: return "skip";
      case CountKind::kShard: return "shard";
    }
    return "?";
  }
  std::vector<NodePtr> inputs() const override { return {input_}; }
  NodePtr with_inputs(std::vector<NodePtr> in) const override {
    return std::make_shared<CountNode>(kind_, in.at(0), n_, index_);
  }

 private:
  CountKind kind_;
  NodePtr input_;
  int64_t n_, index_;
};

// The next round's input iterator is made as soon as the previous round ends (and the first at once), so
// a saved state always holds it: a fresh one made at restore time could differ (a shuffle's pass number).
class RepeatIterator : public IteratorImpl {
 public:
  RepeatIterator(const DatasetNode& input, int64_t count, const State* state) : input_node_(input), count_(count) {
    if (state == nullptr) {
      start_round();
      return;
    }
    check_state(*state, "repeat");
    round_ = state->at("round").get<int64_t>();
    produced_ = state->at("produced").get<int64_t>();
    if (!state->at("input").is_null()) input_ = input_node_.make_iterator(&state->at("input"));
  }
  std::optional<Element> next() override {
    while (input_) {
      if (std::optional<Element> e = input_->next()) {
        ++produced_;
        return e;
      }
      input_.reset();
      ++round_;
      // An empty round would be empty forever: stop rather than spin.
      if (produced_ > 0) start_round();
    }
    return std::nullopt;
  }
  State save() override {
    State s = new_state("repeat");
    s["round"] = round_;
    s["produced"] = produced_;
    s["input"] = input_ ? input_->save() : State();
    return s;
  }

 private:
  void start_round() {
    if (count_ >= 0 && round_ >= count_) return;
    input_ = input_node_.make_iterator(nullptr);
    produced_ = 0;
  }

  const DatasetNode& input_node_;
  int64_t count_;
  int64_t round_ = 0, produced_ = 0;
  std::unique_ptr<IteratorImpl> input_;  // null once finished
};

class RepeatNode : public DatasetNode {
 public:
  RepeatNode(NodePtr input, int64_t count) : input_(std::move(input)), count_(count) {}
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    return std::make_unique<RepeatIterator>(*input_, count_, state);
  }
  int64_t cardinality() const override {
    int64_t c = input_->cardinality();
    if (count_ < 0) return c == 0 ? 0 : Dataset::kInfinite;
    if (count_ == 0 || c == 0) return 0;
    if (c < 0) return c;
    return c * count_;
  }
  std::string_view op() const override { return "repeat"; }
  std::vector<NodePtr> inputs() const override { return {input_}; }
  NodePtr with_inputs(std::vector<NodePtr> in) const override {
    return std::make_shared<RepeatNode>(in.at(0), count_);
  }

 private:
  NodePtr input_;
  int64_t count_;
};

}  // namespace
}  // namespace data_internal

using data_internal::CountKind;
using data_internal::CountNode;

Dataset Dataset::map(MapFn fn, MapOptions options) const {
  GF_CHECK(fn != nullptr, ValueError, "map: empty function");
  GF_CHECK(options.num_parallel_calls >= 1 || options.num_parallel_calls == kAutotune, ValueError,
           "map: num_parallel_calls must be >= 1 or kAutotune, got ", options.num_parallel_calls);
  return Dataset(std::make_shared<data_internal::MapNode>(node(), std::move(fn), options));
}

Dataset Dataset::filter(Predicate predicate) const {
  GF_CHECK(predicate != nullptr, ValueError, "filter: empty predicate");
  return Dataset(std::make_shared<data_internal::FilterNode>(node(), std::move(predicate)));
}

Dataset Dataset::take(int64_t count) const {
  GF_CHECK(count >= -1, ValueError, "take: count must be >= -1, got ", count);
  return Dataset(std::make_shared<CountNode>(CountKind::kTake, node(), count));
}

Dataset Dataset::skip(int64_t count) const {
  GF_CHECK(count >= -1, ValueError, "skip: count must be >= -1, got ", count);
  return Dataset(std::make_shared<CountNode>(CountKind::kSkip, node(), count));
}

Dataset Dataset::shard(int64_t num_shards, int64_t index) const {
  GF_CHECK(num_shards >= 1, ValueError, "shard: num_shards must be >= 1, got ", num_shards);
  GF_CHECK(index >= 0 && index < num_shards, ValueError, "shard: index ", index, " is out of range for num_shards ",
           num_shards, " (need 0 <= index < num_shards)");
  return Dataset(std::make_shared<CountNode>(CountKind::kShard, node(), num_shards, index));
}

Dataset Dataset::repeat(int64_t count) const {
  GF_CHECK(count >= -1, ValueError, "repeat: count must be >= -1, got ", count);
  return Dataset(std::make_shared<data_internal::RepeatNode>(node(), count));
}

}  // namespace gradflow
