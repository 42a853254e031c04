#include "distributed/store/store.h"

#include <charconv>

#include "core/tensor/error.h"

namespace gradflow::distributed::store_internal {

absl::Status timeout_error(const char* op, const std::vector<std::string>& keys, Store::Timeout timeout) {
  std::string names;
  for (const std::string& key : keys) names += str_cat(names.empty() ? "" : ", ", '"', key, '"');
  return absl::DeadlineExceededError(str_cat(op, ": key", keys.size() == 1 ? " " : "s ", names,
                                             keys.size() == 1 ? " was" : " were", " not set within ",
                                             timeout.count(), " ms"));
}

absl::StatusOr<int64_t> parse_counter(const std::string& key, const std::string& value) {
  int64_t result = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, result);
  if (value.empty() || ec != std::errc() || ptr != end) {
    return absl::InvalidArgumentError(
        str_cat("add(\"", key, "\"): the value \"", value.substr(0, 64), "\" is not a decimal integer"));
  }
  return result;
}

bool compare_set_applies(bool present, const std::string& current, const std::string& expected) {
  return present ? current == expected : expected.empty();
}

}  // namespace gradflow::distributed::store_internal
