#include "distributed/store/prefix_store.h"

namespace gradflow::distributed {

PrefixStore::PrefixStore(std::string prefix, std::shared_ptr<Store> base)
    : Store(base->timeout()), prefix_(std::move(prefix)), base_(std::move(base)) {}

std::vector<std::string> PrefixStore::join(const std::vector<std::string>& keys) const {
  std::vector<std::string> joined;
  joined.reserve(keys.size());
  for (const std::string& key : keys) joined.push_back(join(key));
  return joined;
}

absl::Status PrefixStore::set(const std::string& key, const std::string& value) {
  return base_->set(join(key), value);
}

absl::StatusOr<std::string> PrefixStore::get(const std::string& key, Timeout timeout) {
  return base_->get(join(key), timeout);
}

absl::StatusOr<int64_t> PrefixStore::add(const std::string& key, int64_t delta) {
  return base_->add(join(key), delta);
}

absl::Status PrefixStore::wait(const std::vector<std::string>& keys, Timeout timeout) {
  return base_->wait(join(keys), timeout);
}

absl::StatusOr<std::string> PrefixStore::compare_set(const std::string& key, const std::string& expected,
                                                     const std::string& desired) {
  return base_->compare_set(join(key), expected, desired);
}

absl::StatusOr<bool> PrefixStore::check(const std::vector<std::string>& keys) {
  return base_->check(join(keys));
}

absl::StatusOr<bool> PrefixStore::delete_key(const std::string& key) { return base_->delete_key(join(key)); }

}  // namespace gradflow::distributed
