// Plain and gzip byte streams under the record formats (internal to core/io).
//
//   absl::StatusOr<std::unique_ptr<ByteSource>> in = ByteSource::open(path, Compression::kGzip);
//   absl::StatusOr<size_t> n = (*in)->read(buf, sizeof buf);   // short only at end of file
//
// Offsets are positions in the uncompressed stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/io/tfrecord.h"

namespace gradflow::internal {

class ByteSink {
 public:
  // Creates or truncates path. gzip_level is used with kGzip only.
  static absl::StatusOr<std::unique_ptr<ByteSink>> open(const std::string& path, Compression compression,
                                                        int gzip_level);
  virtual ~ByteSink() = default;
  virtual absl::Status write(const void* data, size_t size) = 0;
  virtual absl::Status flush() = 0;
  // Flushes and releases the file; write/flush after it are kFailedPrecondition.
  virtual absl::Status close() = 0;
};

class ByteSource {
 public:
  static absl::StatusOr<std::unique_ptr<ByteSource>> open(const std::string& path, Compression compression);
  virtual ~ByteSource() = default;
  // Reads up to size bytes; fewer only at the end of the stream. kDataLoss for a corrupt gzip stream or a
  // failed read, with a message that does not repeat the path (the caller adds path and record offset).
  virtual absl::StatusOr<size_t> read(void* data, size_t size) = 0;
  // Positions the stream at offset; works after a read error, too. Errors name the path.
  virtual absl::Status seek(uint64_t offset) = 0;
};

// "<path>: cannot open (<strerror>)" with the code errno suggests (kNotFound, kPermissionDenied, ...).
absl::Status open_error(const std::string& path, int err);

}  // namespace gradflow::internal
