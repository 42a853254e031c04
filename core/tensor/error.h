// gradflow::Error and its subclasses: what the user-facing API throws.
//
// Library internals that can fail for outside reasons return absl::Status; the public API (tensors, ops,
// layers) throws these, with messages naming the op and the offending values:
//   matmul: [32,784] x [128,10]: inner dimensions 784 and 128 differ
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

#include "absl/status/status.h"

namespace gradflow {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// Shapes that do not fit the op (rank, broadcasting, inner dimensions).
class ShapeError : public Error {
 public:
  using Error::Error;
};
// A dtype the op does not accept, or operands of different dtypes.
class DTypeError : public Error {
 public:
  using Error::Error;
};
// Operands on different devices, or a device this build or machine does not have.
class DeviceError : public Error {
 public:
  using Error::Error;
};
// Any other bad argument (axis out of range, negative size, bad attribute).
class ValueError : public Error {
 public:
  using Error::Error;
};
// Misuse of an object's protocol (a non-persistent tape asked twice, an undefined tensor used).
class StateError : public Error {
 public:
  using Error::Error;
};

// Concatenates anything streamable into a string (absl::StrCat here takes no std::string_view: Debian's
// abseil has its own string_view type).
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// Converts a non-OK Status into the matching Error at the API boundary.
[[noreturn]] void throw_status(const absl::Status& status);
inline void throw_if_error(const absl::Status& status) {
  if (!status.ok()) throw_status(status);
}

}  // namespace gradflow

// Throws ErrorType with the pieces of the message concatenated, when cond is false.
#define GF_CHECK(cond, ErrorType, ...)                          \
  do {                                                          \
    if (!(cond)) throw ErrorType(::gradflow::str_cat(__VA_ARGS__));    \
  } while (0)
