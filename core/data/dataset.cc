// Dataset and Iterator: the handles users hold. Each transformation's node lives in its own file.
#include "core/data/dataset.h"

#include <functional>

#include "core/data/internal.h"
#include "core/tensor/error.h"

namespace gradflow {

using data_internal::State;

namespace {

constexpr const char* kStateFormat = "gradflow.data.iterator";
constexpr int kStateVersion = 1;

// Runs f, turning JSON access errors on a malformed state into ValueError.
template <typename F>
auto guard_state(F&& f) {
  try {
    return f();
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(str_cat("restore: malformed iterator state (", e.what(), ")"));
  }
}

std::unique_ptr<data_internal::IteratorImpl> restore_root(const data_internal::DatasetNode& node,
                                                          const IteratorState& state) {
  return guard_state([&] {
    State s;
    try {
      s = State::from_cbor(state.bytes());
    } catch (const nlohmann::json::exception& e) {
      throw ValueError(str_cat("restore: not a saved iterator state (", e.what(), ")"));
    }
    if (!s.is_object() || s.value("format", "") != kStateFormat) {
      throw ValueError("restore: not a saved iterator state (no gradflow.data.iterator header)");
    }
    if (s.at("version").get<int>() != kStateVersion) {
      throw ValueError(str_cat("restore: iterator state version ", s["version"].dump(), ", this build reads ",
                               kStateVersion));
    }
    return node.make_iterator(&s.at("root"));
  });
}

}  // namespace

// ---- ElementIterator ----

ElementIterator::ElementIterator(std::shared_ptr<Iterator> owned, Iterator* it) : owned_(std::move(owned)), it_(it) {
  current_ = it_->next();
}

ElementIterator& ElementIterator::operator++() {
  current_ = it_->next();
  return *this;
}

// ---- Iterator ----

Iterator::Iterator(std::shared_ptr<const data_internal::DatasetNode> node,
                   std::unique_ptr<data_internal::IteratorImpl> impl)
    : node_(std::move(node)), impl_(std::move(impl)) {}
Iterator::Iterator(Iterator&&) noexcept = default;
Iterator& Iterator::operator=(Iterator&& other) noexcept {
  if (this == &other) return *this;
  impl_.reset();  // stop the old pass while the nodes it reads are still alive
  node_ = std::move(other.node_);
  impl_ = std::move(other.impl_);
  return *this;
}
Iterator::~Iterator() = default;

std::optional<Element> Iterator::next() {
  GF_CHECK(impl_ != nullptr, StateError, "Iterator::next: the iterator was moved from");
  return impl_->next();
}

IteratorState Iterator::save() {
  GF_CHECK(impl_ != nullptr, StateError, "Iterator::save: the iterator was moved from");
  State s = State::object();
  s["format"] = kStateFormat;
  s["version"] = kStateVersion;
  s["root"] = impl_->save();
  std::vector<uint8_t> bytes = State::to_cbor(s);
  return IteratorState::from_bytes(std::string(bytes.begin(), bytes.end()));
}

void Iterator::restore(const IteratorState& state) {
  GF_CHECK(node_ != nullptr, StateError, "Iterator::restore: the iterator was moved from");
  // Stop this iterator's threads before the restored one starts its own.
  impl_.reset();
  impl_ = restore_root(*node_, state);
}

// ---- Dataset ----

Dataset::Dataset(std::shared_ptr<const data_internal::DatasetNode> node) : node_(std::move(node)) {
  GF_CHECK(node_ != nullptr, ValueError, "Dataset: null node");
}

Iterator Dataset::make_iterator() const { return Iterator(node_, node_->make_iterator(nullptr)); }

Iterator Dataset::make_iterator(const IteratorState& state) const { return Iterator(node_, restore_root(*node_, state)); }

ElementIterator Dataset::begin() const {
  auto it = std::make_shared<Iterator>(make_iterator());
  Iterator* raw = it.get();
  return ElementIterator(std::move(it), raw);
}

int64_t Dataset::cardinality() const { return node_->cardinality(); }

data_internal::NodePtr data_internal::DatasetNode::with_files(std::vector<std::string>) const {
  throw StateError(str_cat("with_files on \"", op(), "\", which reads no files"));
}

std::vector<std::string> Dataset::source_files() const {
  std::vector<std::string> out;
  // Depth-first, inputs in order, so files come out in pipeline order.
  std::function<void(const data_internal::DatasetNode&)> visit = [&](const data_internal::DatasetNode& n) {
    for (const data_internal::NodePtr& in : n.inputs()) visit(*in);
    for (std::string& f : n.files()) out.push_back(std::move(f));
  };
  visit(*node_);
  return out;
}

}  // namespace gradflow
