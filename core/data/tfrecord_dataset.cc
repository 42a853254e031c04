#include "core/data/tfrecord_dataset.h"

#include <cstring>

#include "core/data/internal.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace data_internal {
namespace {

class TFRecordIterator : public IteratorImpl {
 public:
  TFRecordIterator(const std::vector<std::string>& files, const TFRecordReaderOptions& options, const State* state)
      : files_(files), options_(options) {
    if (state == nullptr) return;
    check_state(*state, "tfrecord");
    file_ = state->at("file").get<size_t>();
    if (file_ > files_.size()) {
      throw ValueError(str_cat("restore: tfrecord state names file ", file_, " of ", files_.size()));
    }
    if (file_ < files_.size()) {
      open_current();
      throw_if_error(reader_->seek(state->at("offset").get<uint64_t>()));
    }
  }

  std::optional<Element> next() override {
    while (file_ < files_.size()) {
      if (!reader_) open_current();
      absl::StatusOr<std::optional<std::string>> record = reader_->read_next();
      throw_if_error(record.status());
      if (*record) {
        const std::string& bytes = **record;
        Tensor t = empty({static_cast<int64_t>(bytes.size())}, kU8);
        if (!bytes.empty()) std::memcpy(t.raw_data(), bytes.data(), bytes.size());
        return Element{t};
      }
      reader_.reset();
      ++file_;
    }
    return std::nullopt;
  }

  State save() override {
    State s = new_state("tfrecord");
    s["file"] = file_;
    s["offset"] = reader_ ? reader_->offset() : 0;
    return s;
  }

 private:
  void open_current() {
    absl::StatusOr<TFRecordReader> r = TFRecordReader::open(files_[file_], options_);
    throw_if_error(r.status());
    reader_.emplace(std::move(*r));
  }

  const std::vector<std::string>& files_;
  const TFRecordReaderOptions& options_;
  size_t file_ = 0;
  std::optional<TFRecordReader> reader_;
};

class TFRecordNode : public DatasetNode {
 public:
  TFRecordNode(std::vector<std::string> files, TFRecordReaderOptions options)
      : files_(std::move(files)), options_(options) {}
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    return std::make_unique<TFRecordIterator>(files_, options_, state);
  }
  int64_t cardinality() const override { return files_.empty() ? 0 : Dataset::kUnknown; }
  std::string_view op() const override { return "tfrecord"; }
  std::vector<std::string> files() const override { return files_; }
  NodePtr with_inputs(std::vector<NodePtr>) const override { throw StateError("with_inputs on a source"); }
  NodePtr with_files(std::vector<std::string> files) const override {
    return std::make_shared<TFRecordNode>(std::move(files), options_);
  }

 private:
  std::vector<std::string> files_;
  TFRecordReaderOptions options_;
};

}  // namespace
}  // namespace data_internal

TFRecordDataset::TFRecordDataset(std::vector<std::string> filenames, TFRecordReaderOptions options)
    : Dataset(std::make_shared<data_internal::TFRecordNode>(std::move(filenames), options)) {}

}  // namespace gradflow
