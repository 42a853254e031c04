// tf.data-style input pipelines: a Dataset describes a sequence of elements, an Iterator walks it.
//
//   Dataset ds = Dataset::from_tensor_slices({images, labels})   // one element per row: {image, label}
//                    .shuffle(10000, /*seed=*/42)
//                    .map([](Element e) { return Element{e[0].to(kF32) / 255.0, e[1]}; },
//                         {.num_parallel_calls = kAutotune})
//                    .batch(32)
//                    .prefetch(kAutotune);
//   for (const Element& batch : ds) train_step(batch[0], batch[1]);
//
// A Dataset is a cheap value handle on a shared graph of dataset nodes; transformations return new
// Datasets and never change their input. Each make_iterator() (and each range-for) starts a fresh pass.
// Errors throw gradflow::Error subclasses naming the transformation and the offending values; an error
// raised while producing one element (a failing map function, a generator that throws) surfaces at that
// element's position, in order, even through prefetch and parallel map.
//
// Determinism: with a seed, shuffle gives the same order on every run; map with deterministic = true
// keeps input order whatever its thread count. Iterators save their position (Iterator::save) so a
// resumed job continues with the exact next element.
#pragma once

#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace gradflow {

namespace data_internal {
class DatasetNode;
class IteratorImpl;
}  // namespace data_internal

// One element: a tuple of tensors, e.g. {image, label}.
using Element = std::vector<Tensor>;

// Asks a transformation to choose its parallelism or buffer size from the machine's hardware threads.
inline constexpr int64_t kAutotune = -1;

using MapFn = std::function<Element(Element)>;
using Predicate = std::function<bool(const Element&)>;
// Returns the next element of one pass, or nullopt at its end.
using GeneratorFn = std::function<std::optional<Element>()>;
// Called once per iterator, so every pass starts a fresh generator.
using GeneratorFactory = std::function<GeneratorFn()>;

struct MapOptions {
  int64_t num_parallel_calls = 1;  // > 1 or kAutotune: that many threads apply the function
  bool deterministic = true;       // false: elements come out as soon as they are ready
};

struct InterleaveOptions {
  int64_t cycle_length = kAutotune;  // how many input elements are open at once (kAutotune: hardware threads)
  int64_t block_length = 1;          // consecutive elements taken from each before moving to the next
  int64_t num_parallel_calls = 1;    // > 1 or kAutotune: threads read ahead of the open elements
};

// An Iterator's position, as an opaque byte string to store with a checkpoint. Tensors held in buffers
// (shuffle, prefetch, parallel map) are part of it and come back on the CPU.
class IteratorState {
 public:
  IteratorState() = default;
  static IteratorState from_bytes(std::string bytes) { return IteratorState(std::move(bytes)); }
  const std::string& bytes() const { return bytes_; }
  bool empty() const { return bytes_.empty(); }
  // The state as JSON text, tensors shown as dtype and shape only; ValueError on malformed bytes.
  std::string debug_string() const;

 private:
  explicit IteratorState(std::string bytes) : bytes_(std::move(bytes)) {}
  std::string bytes_;
};

class Iterator;

// An input iterator over elements, for range-for over a Dataset or an Iterator.
class ElementIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = Element;
  using difference_type = std::ptrdiff_t;
  using pointer = const Element*;
  using reference = const Element&;

  ElementIterator() = default;
  const Element& operator*() const { return *current_; }
  const Element* operator->() const { return &*current_; }
  ElementIterator& operator++();
  void operator++(int) { ++*this; }
  bool operator==(std::default_sentinel_t) const { return !current_.has_value(); }

 private:
  friend class Iterator;
  friend class Dataset;
  ElementIterator(std::shared_ptr<Iterator> owned, Iterator* it);
  std::shared_ptr<Iterator> owned_;  // set when the range-for created the iterator itself
  Iterator* it_ = nullptr;
  std::optional<Element> current_;
};

// One pass over a Dataset. Not copyable; not for use from several threads at once. Destroying it stops
// its background threads (prefetch, parallel map, parallel interleave) and waits for them.
class Iterator {
 public:
  Iterator(Iterator&&) noexcept;
  Iterator& operator=(Iterator&&) noexcept;
  ~Iterator();

  // The next element, or nullopt at the end of the pass.
  std::optional<Element> next();
  // The position after the last element returned. StateError when the pipeline holds a from_generator
  // source, whose position is opaque.
  IteratorState save();
  // Moves to a saved position of an iterator over the same pipeline; ValueError when the state does not
  // match the pipeline's structure or is malformed.
  void restore(const IteratorState& state);

  ElementIterator begin() { return ElementIterator(nullptr, this); }
  std::default_sentinel_t end() { return {}; }

 private:
  friend class Dataset;
  Iterator(std::shared_ptr<const data_internal::DatasetNode> node, std::unique_ptr<data_internal::IteratorImpl> impl);
  // node_ before impl_: destroyed after it, since impl_'s threads read the nodes until they stop.
  std::shared_ptr<const data_internal::DatasetNode> node_;
  std::unique_ptr<data_internal::IteratorImpl> impl_;
};

class Dataset {
 public:
  // cardinality() values besides a known count (TF's INFINITE_CARDINALITY and UNKNOWN_CARDINALITY).
  static constexpr int64_t kInfinite = -1;
  static constexpr int64_t kUnknown = -2;

  // ---- Sources ----
  // Element i is {c[i] for c in components}: slices along axis 0, whose sizes must all match.
  static Dataset from_tensor_slices(std::vector<Tensor> components);
  // One element.
  static Dataset from_tensors(Element element);
  // Elements from a generator; each iterator calls factory() for a fresh one. Iterators over it cannot
  // be saved.
  static Dataset from_generator(GeneratorFactory factory);
  // i64 scalars start, start + step, ... up to (not including) stop.
  static Dataset range(int64_t stop) { return range(0, stop, 1); }
  static Dataset range(int64_t start, int64_t stop, int64_t step = 1);

  // ---- Transformations (each returns a new Dataset) ----
  Dataset map(MapFn fn, MapOptions options = {}) const;
  Dataset filter(Predicate predicate) const;
  // TF's shuffle: fills a buffer of buffer_size elements, emits a random one and puts the next input
  // element in its place. Without a seed, one is drawn from the global generator (core/tensor/random.h)
  // when the dataset is built. With reshuffle_each_iteration every new pass (a new iterator, or the next
  // round of a repeat above) has its own order, the same on every run.
  Dataset shuffle(int64_t buffer_size, std::optional<uint64_t> seed = std::nullopt,
                  bool reshuffle_each_iteration = true) const;
  // Stacks batch_size consecutive elements component-wise (shapes must match). The last batch may be
  // smaller unless drop_remainder.
  Dataset batch(int64_t batch_size, bool drop_remainder = false) const;
  // Like batch, but pads each component up to padded_shapes[c] (a -1 dimension, or an empty list, pads to
  // the batch's longest) with padding_values[c] (default 0).
  Dataset padded_batch(int64_t batch_size, std::vector<Shape> padded_shapes = {},
                       std::vector<double> padding_values = {}, bool drop_remainder = false) const;
  // Every n consecutive elements (batches) joined along axis 0, component by component; the last joins
  // what is left. A process running n replicas reads n per-replica batches as one (MirroredStrategy's
  // distribute_dataset). ShapeError/DTypeError naming the element when they differ beyond axis 0.
  Dataset merge_batches(int64_t n) const;
  // Produces up to buffer_size elements ahead on a background thread (kAutotune: one per hardware
  // thread, between 2 and 16).
  Dataset prefetch(int64_t buffer_size) const;
  // Keeps the elements of the first complete pass in memory; later passes read them from there.
  Dataset cache() const;
  // Writes the first complete pass to `filename` (to a temporary file renamed on completion, so an
  // interrupted pass leaves nothing that reads as complete); when the file exists, reads it instead.
  Dataset cache(std::string filename) const;
  // count passes over the input (-1: forever).
  Dataset repeat(int64_t count = -1) const;
  Dataset take(int64_t count) const;  // the first count elements (-1: all)
  Dataset skip(int64_t count) const;  // all but the first count elements (-1: none)
  // Maps each input element to a Dataset and interleaves their elements: cycle_length of them open at
  // once, block_length elements from each in turn (TF's order, also with num_parallel_calls > 1).
  Dataset interleave(std::function<Dataset(const Element&)> fn, InterleaveOptions options = {}) const;
  // Elements index, index + num_shards, ...: one worker's share when sharding by element.
  Dataset shard(int64_t num_shards, int64_t index) const;

  // ---- Iteration ----
  Iterator make_iterator() const;
  Iterator make_iterator(const IteratorState& state) const;
  ElementIterator begin() const;
  std::default_sentinel_t end() const { return {}; }

  // Number of elements, or kInfinite / kUnknown, as TF computes it statically.
  int64_t cardinality() const;
  // The files every file-backed source in the pipeline reads, in order: a strategy that shards by file
  // gives each worker a subset of them to build its own pipeline from; others shard by element.
  std::vector<std::string> source_files() const;

  // For sources and transformations defined in core/data (data_internal's nodes): not user API.
  explicit Dataset(std::shared_ptr<const data_internal::DatasetNode> node);
  const std::shared_ptr<const data_internal::DatasetNode>& node() const { return node_; }

 private:
  std::shared_ptr<const data_internal::DatasetNode> node_;
};

}  // namespace gradflow
