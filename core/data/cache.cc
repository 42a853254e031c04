// cache() and cache(filename): the first complete pass is recorded (in memory, or in a file through
// cache_file.h); passes that start after it read the recording.
//
// A state saved during the recording pass, or while reading the memory cache, does not hold the elements:
// it holds the input iterator's starting state, and restoring replays the input from there. That keeps
// checkpoints small but needs an input that gives the same elements on every replay (seeded shuffles,
// deterministic maps); a replay that ends early is an error. A file cache's read position is a byte offset.
#include <unistd.h>

#include <mutex>

#include "core/data/cache_file.h"
#include "core/data/internal.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace data_internal {
namespace {

// The input iterator's starting state, or why it cannot be saved (a from_generator source).
struct InitialState {
  std::optional<State> state;
  std::string error;
  const State& get() const {
    if (!state) throw StateError(str_cat("cache: cannot save: ", error));
    return *state;
  }
};

InitialState capture(IteratorImpl& it) {
  try {
    return {it.save(), ""};
  } catch (const StateError& e) {
    return {std::nullopt, e.what()};
  }
}

// A memory cache's recording, shared by every iterator of one node.
struct MemoryStore {
  std::mutex mu;
  std::shared_ptr<const std::vector<Element>> elements;  // set once, when a pass completes
  InitialState fill;                                     // how to replay the pass that filled it
};

class CacheIterator : public IteratorImpl {
 public:
  // filename: null for the memory cache.
  CacheIterator(const DatasetNode& input, const std::string* filename, MemoryStore& store, const State* state)
      : input_node_(input), filename_(filename), store_(store) {
    if (state == nullptr) {
      start_fresh();
    } else {
      check_state(*state, "cache");
      restore(*state);
    }
  }

  std::optional<Element> next() override {
    switch (mode_) {
      case Mode::kWrite: {
        std::optional<Element> e = input_->next();
        if (e) {
          record(*e);
        } else {
          finish_write();
        }
        return e;
      }
      case Mode::kRead:
        if (filename_ == nullptr) {
          if (index_ < static_cast<int64_t>(elements_->size())) return (*elements_)[index_++];
        } else {
          // A damaged file keeps failing: its later bytes cannot be trusted.
          throw_if_error(read_error_);
          absl::StatusOr<std::optional<Element>> e = reader_->next();
          read_error_ = e.status();
          throw_if_error(read_error_);
          if (*e) return std::move(*e);
          reader_.reset();
        }
        mode_ = Mode::kDone;
        return std::nullopt;
      case Mode::kDone:
        return std::nullopt;
    }
    return std::nullopt;
  }

  State save() override {
    State s = new_state("cache");
    switch (mode_) {
      case Mode::kWrite:
        s["mode"] = "write";
        s["count"] = count_;
        s["initial"] = initial_.get();
        break;
      case Mode::kRead:
        s["mode"] = "read";
        if (filename_ == nullptr) {
          s["index"] = index_;
          std::lock_guard<std::mutex> lock(store_.mu);
          s["initial"] = store_.fill.get();
        } else {
          s["index"] = reader_->index();
          s["offset"] = reader_->offset();
        }
        break;
      case Mode::kDone:
        s["mode"] = "done";
        break;
    }
    return s;
  }

 private:
  enum class Mode { kWrite, kRead, kDone };

  void start_fresh() {
    if (filename_ == nullptr) {
      std::lock_guard<std::mutex> lock(store_.mu);
      if (store_.elements) {
        start_memory_read(store_.elements, 0);
        return;
      }
    } else if (access(filename_->c_str(), F_OK) == 0) {
      start_file_read(std::nullopt, 0);
      return;
    }
    start_write(nullptr, 0);
  }

  void restore(const State& s) {
    std::string mode = s.at("mode").get<std::string>();
    if (mode == "done") {
      mode_ = Mode::kDone;
    } else if (mode == "write") {
      int64_t count = s.at("count").get<int64_t>();
      // Finished elsewhere since the save (another iterator or process): read the finished recording.
      if (filename_ != nullptr && access(filename_->c_str(), F_OK) == 0) {
        start_file_read(std::nullopt, 0);
        for (int64_t i = 0; i < count; ++i) throw_if_error(reader_->next().status());
      } else if (std::shared_ptr<const std::vector<Element>> done = completed_memory()) {
        start_memory_read(done, count);
      } else {
        start_write(&s.at("initial"), count);
      }
    } else if (mode == "read" && filename_ != nullptr) {
      start_file_read(s.at("offset").get<int64_t>(), s.at("index").get<int64_t>());
    } else if (mode == "read") {
      std::shared_ptr<const std::vector<Element>> done = completed_memory();
      if (!done) done = replay_into_store(s.at("initial"));
      start_memory_read(done, s.at("index").get<int64_t>());
    } else {
      throw ValueError(str_cat("restore: unknown cache mode '", mode, "'"));
    }
  }

  std::shared_ptr<const std::vector<Element>> completed_memory() {
    if (filename_ != nullptr) return nullptr;
    std::lock_guard<std::mutex> lock(store_.mu);
    return store_.elements;
  }

  // Rebuilds a memory cache lost with its process by running the recorded pass again.
  std::shared_ptr<const std::vector<Element>> replay_into_store(const State& initial) {
    std::unique_ptr<IteratorImpl> it = input_node_.make_iterator(&initial);
    auto elements = std::make_shared<std::vector<Element>>();
    while (std::optional<Element> e = it->next()) elements->push_back(std::move(*e));
    std::lock_guard<std::mutex> lock(store_.mu);
    if (!store_.elements) {
      store_.elements = std::move(elements);
      store_.fill = {initial, ""};
    }
    return store_.elements;
  }

  void start_memory_read(std::shared_ptr<const std::vector<Element>> elements, int64_t index) {
    if (index < 0 || index > static_cast<int64_t>(elements->size())) {
      throw ValueError(str_cat("restore: cache position ", index, " is outside the ", elements->size(),
                               " cached elements"));
    }
    elements_ = std::move(elements);
    index_ = index;
    mode_ = Mode::kRead;
  }

  void start_file_read(std::optional<int64_t> offset, int64_t index) {
    absl::StatusOr<std::unique_ptr<CacheFileReader>> r = CacheFileReader::open(*filename_, offset, index);
    throw_if_error(r.status());
    reader_ = std::move(*r);
    mode_ = Mode::kRead;
  }

  // Records from the input; on restore, replays `replay` elements the consumer has already seen.
  void start_write(const State* initial, int64_t replay) {
    input_ = input_node_.make_iterator(initial);
    initial_ = initial != nullptr ? InitialState{*initial, ""} : capture(*input_);
    if (filename_ != nullptr) {
      absl::StatusOr<std::unique_ptr<CacheFileWriter>> w = CacheFileWriter::create(*filename_);
      throw_if_error(w.status());
      writer_ = std::move(*w);
    }
    mode_ = Mode::kWrite;
    for (int64_t i = 0; i < replay; ++i) {
      std::optional<Element> e = input_->next();
      if (!e) {
        throw ValueError(str_cat("restore: cache's input ended after ", i, " of the ", replay,
                                 " elements already seen; restoring a cache needs an input that repeats exactly"));
      }
      record(*e);
    }
  }

  void record(const Element& e) {
    if (writer_) {
      throw_if_error(writer_->append(e));
    } else {
      recorded_.push_back(e);
    }
    ++count_;
  }

  void finish_write() {
    input_.reset();
    mode_ = Mode::kDone;
    if (writer_) {
      absl::Status status = writer_->finish();
      writer_.reset();
      throw_if_error(status);
      return;
    }
    std::lock_guard<std::mutex> lock(store_.mu);
    if (!store_.elements) {  // the first pass to complete wins
      store_.elements = std::make_shared<const std::vector<Element>>(std::move(recorded_));
      store_.fill = initial_;
    }
  }

  const DatasetNode& input_node_;
  const std::string* filename_;
  MemoryStore& store_;
  Mode mode_ = Mode::kDone;
  // Recording.
  std::unique_ptr<IteratorImpl> input_;
  InitialState initial_;
  std::vector<Element> recorded_;
  std::unique_ptr<CacheFileWriter> writer_;
  int64_t count_ = 0;
  // Reading.
  std::shared_ptr<const std::vector<Element>> elements_;
  int64_t index_ = 0;
  std::unique_ptr<CacheFileReader> reader_;
  absl::Status read_error_;
};

class CacheNode : public DatasetNode {
 public:
  // An empty filename: the memory cache.
  CacheNode(NodePtr input, std::string filename) : input_(std::move(input)), filename_(std::move(filename)) {}
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    return std::make_unique<CacheIterator>(*input_, filename_.empty() ? nullptr : &filename_, store_, state);
  }
  int64_t cardinality() const override { return input_->cardinality(); }
  std::string_view op() const override { return "cache"; }
  std::vector<NodePtr> inputs() const override { return {input_}; }
  NodePtr with_inputs(std::vector<NodePtr> in) const override {
    // A file cache's state is its file: a rebuilt pipeline (another shard of the data) would read the
    // original's recording.
    GF_CHECK(filename_.empty(), ValueError, "cache(\"", filename_, "\"): a pipeline with a file cache cannot be ",
             "rebuilt over other inputs (e.g. sharded by file): its file holds the original's elements");
    return std::make_shared<CacheNode>(in.at(0), filename_);
  }

 private:
  NodePtr input_;
  std::string filename_;
  mutable MemoryStore store_;  // the recording: the node's other mutable part besides shuffle's counter
};

}  // namespace
}  // namespace data_internal

Dataset Dataset::cache() const { return Dataset(std::make_shared<data_internal::CacheNode>(node(), std::string())); }

Dataset Dataset::cache(std::string filename) const {
  GF_CHECK(!filename.empty(), ValueError, "cache: empty filename (use cache() for a memory cache)");
  return Dataset(std::make_shared<data_internal::CacheNode>(node(), std::move(filename)));
}

}  // namespace gradflow
