// PrefixStore: a view of another Store in which every key is "<prefix>/<key>", so that independent users
// of one store (process groups, restarts of a job) cannot see each other's keys.
//
//   PrefixStore group_store("group1", store);   // store: std::shared_ptr<Store>
//   group_store.set("ready", "1");               // sets "group1/ready" in store
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "distributed/store/store.h"

namespace gradflow::distributed {

class PrefixStore : public Store {
 public:
  // Shares ownership of base; takes base's default timeout.
  PrefixStore(std::string prefix, std::shared_ptr<Store> base);

  absl::Status set(const std::string& key, const std::string& value) override;
  using Store::get;
  absl::StatusOr<std::string> get(const std::string& key, Timeout timeout) override;
  absl::StatusOr<int64_t> add(const std::string& key, int64_t delta) override;
  using Store::wait;
  absl::Status wait(const std::vector<std::string>& keys, Timeout timeout) override;
  absl::StatusOr<std::string> compare_set(const std::string& key, const std::string& expected,
                                          const std::string& desired) override;
  absl::StatusOr<bool> check(const std::vector<std::string>& keys) override;
  absl::StatusOr<bool> delete_key(const std::string& key) override;

  const std::string& prefix() const { return prefix_; }

 private:
  std::string join(const std::string& key) const { return prefix_ + "/" + key; }
  std::vector<std::string> join(const std::vector<std::string>& keys) const;

  std::string prefix_;
  std::shared_ptr<Store> base_;
};

}  // namespace gradflow::distributed
