// Private helpers shared by the resolvers: look up a variable in an EnvMap and parse it strictly, with
// errors that name the variable and its value, e.g.  SLURM_PROCID="abc": not a non-negative integer
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cluster/environment.h"

namespace gradflow::cluster::internal {

// The value of name, or nullopt when it is not set. An empty value counts as set.
std::optional<std::string> lookup(const EnvMap& env, const std::string& name);

// InvalidArgument "NAME="VALUE": what".
absl::Status env_error(std::string_view name, std::string_view value, std::string_view what);

// A decimal integer >= min_value (no sign, no spaces, fits in int); otherwise env_error naming name.
absl::StatusOr<int> parse_int(std::string_view name, std::string_view value, int min_value = 0);

// The integer in env[name]; fallback when it is not set.
absl::StatusOr<int> int_or(const EnvMap& env, const std::string& name, int fallback, int min_value = 0);

// The integer in env[name]; an error naming name when it is not set (`needed_by` says which variable
// made it required, e.g. "OMPI_COMM_WORLD_RANK is set").
absl::StatusOr<int> required_int(const EnvMap& env, const std::string& name, std::string_view needed_by,
                                 int min_value = 0);

// A TCP port 1..65535, or env_error naming name.
absl::StatusOr<int> parse_port(std::string_view name, std::string_view value);

// Checks 0 <= index < count for a resolved pair: "RANK="4": must be less than WORLD_SIZE (4)".
absl::Status check_less(std::string_view index_name, int index, std::string_view count_name, int count);

}  // namespace gradflow::cluster::internal
