#include "core/tensor/error.h"

namespace gradflow {

void throw_status(const absl::Status& status) {
  std::string message(status.message());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      throw ValueError(message);
    case absl::StatusCode::kFailedPrecondition:
      throw StateError(message);
    default:
      throw Error(str_cat(absl::StatusCodeToString(status.code()), ": ", message));
  }
}

}  // namespace gradflow
