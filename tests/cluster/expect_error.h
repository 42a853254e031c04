// EXPECT_INVALID(expr, "VAR", "value"): expr (a Status or StatusOr) is kInvalidArgument and its message
// names both the variable (or file:line) and the offending value.
#pragma once

#include <string>

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gradflow::cluster::testing {

inline absl::Status status_of(const absl::Status& s) { return s; }
template <typename T>
absl::Status status_of(const absl::StatusOr<T>& s) { return s.status(); }

inline ::testing::AssertionResult is_invalid(const absl::Status& status, const std::string& name,
                                             const std::string& value) {
  std::string message(status.message());
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "expected InvalidArgument, got " << status.ToString();
  }
  if (message.find(name) == std::string::npos || message.find(value) == std::string::npos) {
    return ::testing::AssertionFailure() << "message \"" << message << "\" does not name " << name << " and "
                                         << value;
  }
  return ::testing::AssertionSuccess();
}

}  // namespace gradflow::cluster::testing

#define EXPECT_INVALID(expr, name, value) \
  EXPECT_TRUE(::gradflow::cluster::testing::is_invalid(::gradflow::cluster::testing::status_of(expr), name, value))
