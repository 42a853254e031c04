// Private to core/data: the node and iterator interfaces every dataset implements, and the JSON form of
// iterator state.
//
// A DatasetNode is immutable once built (apart from shuffle's epoch counter and the memory cache), so
// one node can serve many iterators at once. An IteratorImpl is used from one thread at a time; those
// with background threads stop them in their destructor.
//
// Saving: save() returns {"op": <node op>, ...}, nesting the upstream iterator's state. A node restores by
// building an iterator from such a State (make_iterator(&state)), never by patching a running one, so
// background threads start from the restored position.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/data/dataset.h"

namespace gradflow::data_internal {

using State = nlohmann::json;
using NodePtr = std::shared_ptr<const DatasetNode>;

class IteratorImpl {
 public:
  virtual ~IteratorImpl() = default;
  virtual std::optional<Element> next() = 0;
  // Moves past one element exactly as next() would, for a caller that discards it (shard, skip): false
  // at the end. An iterator that can do it for less (batch without stacking its elements, a source
  // without making one) overrides it, as tf.data's iterators override SkipInternal.
  virtual bool skip() { return next().has_value(); }
  // The position after the last element next() returned (not callable concurrently with next()).
  virtual State save() = 0;
};

class DatasetNode {
 public:
  virtual ~DatasetNode() = default;
  // A fresh iterator when state is null, else one resuming from a State saved by an iterator of a node
  // of the same structure.
  virtual std::unique_ptr<IteratorImpl> make_iterator(const State* state) const = 0;
  virtual int64_t cardinality() const = 0;
  virtual std::string_view op() const = 0;
  virtual std::vector<NodePtr> inputs() const { return {}; }
  virtual std::vector<std::string> files() const { return {}; }
  // A new node doing the same over `inputs` (as many as inputs()), with fresh mutable state (caches,
  // shuffle pass counters): how a pipeline is rebuilt, e.g. to shard its files. Sources never get here.
  virtual NodePtr with_inputs(std::vector<NodePtr> inputs) const = 0;
  // File-backed sources: a new node reading only `files` (others are never asked).
  virtual NodePtr with_files(std::vector<std::string> files) const;
};

// An empty state object for op.
State new_state(std::string_view op);
// ValueError unless state was saved by an iterator of op.
void check_state(const State& state, std::string_view op);
// input->make_iterator from a nested state (null or absent: a fresh iterator).
std::unique_ptr<IteratorImpl> restore_input(const DatasetNode& input, const State* state, const char* key);

// Tensors and elements in a State: dtype name, shape and the raw bytes (taken from the CPU).
State tensor_to_state(const Tensor& t);
Tensor tensor_from_state(const State& s);
State element_to_state(const Element& e);
Element element_from_state(const State& s);

// Parallelism for kAutotune: the number of hardware threads (at least 1).
int64_t autotune_parallelism();

// An element and an error in one value: how background threads hand results to the consumer.
struct Result {
  std::optional<Element> element;  // nullopt with no error: end of sequence
  std::exception_ptr error;
};
// Calls it.next(), catching what it throws into the Result.
Result next_result(IteratorImpl& it);
// The element, or rethrows the error.
std::optional<Element> unwrap(Result r);
// A stored error as state: its message (restored as a plain gradflow::Error).
State error_to_state(const std::exception_ptr& error);
std::exception_ptr error_from_state(const State& s);
State result_to_state(const Result& r);
Result result_from_state(const State& s);

// map with `threads` worker threads (map's node picks this when num_parallel_calls > 1); its state is
// interchangeable with the one-thread map's.
std::unique_ptr<IteratorImpl> make_parallel_map_iterator(const DatasetNode& input, const MapFn& fn, int64_t threads,
                                                         bool deterministic, const State* state);

}  // namespace gradflow::data_internal
