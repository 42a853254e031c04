// Private to core/data: the file format of cache(filename), and its writer and reader.
//
// Format (little-endian): "GFDCACHE" then u32 version 1; one record per element: u64 payload length, the
// element as CBOR (the iterator-state encoding of element_to_state), u32 zlib crc32 of the payload; then
// an end marker: u64 0xFFFFFFFFFFFFFFFF and u64 element count. A file without its end marker is
// truncated, and reads as kDataLoss rather than as a short dataset.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/data/dataset.h"

namespace gradflow::data_internal {

// Writes to a temporary file beside `path` and renames it to `path` in finish(), so `path` only ever
// names a complete file. Destroying an unfinished writer removes the temporary file.
class CacheFileWriter {
 public:
  static absl::StatusOr<std::unique_ptr<CacheFileWriter>> create(const std::string& path);
  ~CacheFileWriter();
  absl::Status append(const Element& element);
  absl::Status finish();
  int64_t count() const { return count_; }

 private:
  CacheFileWriter(std::string path, std::string tmp_path, std::FILE* file)
      : path_(std::move(path)), tmp_path_(std::move(tmp_path)), file_(file) {}
  std::string path_, tmp_path_;
  std::FILE* file_;
  int64_t count_ = 0;
};

class CacheFileReader {
 public:
  // Opens `path` and checks its header; positions at the first record, or at `offset` when given (a
  // value offset() returned earlier, with `index` records before it).
  static absl::StatusOr<std::unique_ptr<CacheFileReader>> open(const std::string& path,
                                                               std::optional<int64_t> offset = std::nullopt,
                                                               int64_t index = 0);
  ~CacheFileReader();
  // The next element, nullopt at the end marker; kDataLoss for a truncated or corrupt file.
  absl::StatusOr<std::optional<Element>> next();
  int64_t offset() const { return offset_; }  // of the next record
  int64_t index() const { return index_; }    // records read so far

 private:
  CacheFileReader(std::string path, std::FILE* file, int64_t size) : path_(std::move(path)), file_(file), size_(size) {}
  std::string path_;
  std::FILE* file_;
  int64_t size_;
  int64_t offset_ = 0, index_ = 0;
};

}  // namespace gradflow::data_internal
