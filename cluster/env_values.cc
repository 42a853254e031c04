// Strict parsing of environment values for the resolvers (see internal/env_values.h).
#include "cluster/internal/env_values.h"

#include <charconv>

namespace gradflow::cluster::internal {

std::optional<std::string> lookup(const EnvMap& env, const std::string& name) {
  auto it = env.find(name);
  if (it == env.end()) return std::nullopt;
  return it->second;
}

absl::Status env_error(std::string_view name, std::string_view value, std::string_view what) {
  return absl::InvalidArgumentError(std::string(name) + "=\"" + std::string(value) + "\": " + std::string(what));
}

absl::StatusOr<int> parse_int(std::string_view name, std::string_view value, int min_value) {
  int result = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, result);
  bool digits_only = !value.empty() && value.front() != '-' && value.front() != '+';
  if (!digits_only || ec != std::errc() || ptr != end) {
    if (ec == std::errc::result_out_of_range) return env_error(name, value, "integer out of range");
    return env_error(name, value, min_value >= 0 ? "not a non-negative integer" : "not an integer");
  }
  if (result < min_value) {
    return env_error(name, value, "must be at least " + std::to_string(min_value));
  }
  return result;
}

absl::StatusOr<int> int_or(const EnvMap& env, const std::string& name, int fallback, int min_value) {
  std::optional<std::string> value = lookup(env, name);
  if (!value) return fallback;
  return parse_int(name, *value, min_value);
}

absl::StatusOr<int> required_int(const EnvMap& env, const std::string& name, std::string_view needed_by,
                                 int min_value) {
  std::optional<std::string> value = lookup(env, name);
  if (!value) {
    return absl::InvalidArgumentError(name + " is not set, but " + std::string(needed_by));
  }
  return parse_int(name, *value, min_value);
}

absl::StatusOr<int> parse_port(std::string_view name, std::string_view value) {
  absl::StatusOr<int> port = parse_int(name, value, 1);
  if (!port.ok()) return env_error(name, value, "not a TCP port (1..65535)");
  if (*port > 65535) return env_error(name, value, "not a TCP port (1..65535)");
  return port;
}

absl::Status check_less(std::string_view index_name, int index, std::string_view count_name, int count) {
  if (index < count) return absl::OkStatus();
  return env_error(index_name, std::to_string(index),
                   "must be less than " + std::string(count_name) + " (" + std::to_string(count) + ")");
}

}  // namespace gradflow::cluster::internal
