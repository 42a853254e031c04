// TFRecord files: the record framing of TensorFlow's tf.io.TFRecordWriter / tf.data.TFRecordDataset,
// which TensorBoard event files also use. Each record is
//   uint64 length (little-endian) | uint32 masked crc32c(length bytes) | data | uint32 masked crc32c(data)
// and a GZIP file is that stream compressed as a whole (TF's compression_type="GZIP").
//
//   absl::StatusOr<TFRecordWriter> w = TFRecordWriter::open("train.tfrecord");
//   if (w.ok()) { w->write(serialize_example(ex)).IgnoreError(); w->close().IgnoreError(); }
//
//   absl::StatusOr<TFRecordReader> r = TFRecordReader::open("train.tfrecord");
//   while (true) {
//     absl::StatusOr<std::optional<std::string>> rec = r->read_next();
//     if (!rec.ok()) { /* kDataLoss: names the file and the record's byte offset */ break; }
//     if (!rec->has_value()) break;  // clean end of file
//     use(**rec);
//   }
//
// Readers check both CRCs and refuse a record longer than a limit before allocating for it, so a corrupt
// or hostile file gives an error, never a crash or a huge allocation.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gradflow {

enum class Compression { kNone, kGzip };

struct TFRecordWriterOptions {
  Compression compression = Compression::kNone;
  int gzip_level = 6;  // 1 (fast) to 9 (small), with kGzip
};

struct TFRecordReaderOptions {
  Compression compression = Compression::kNone;     // must match the file: plain files are never sniffed
  uint64_t max_record_bytes = uint64_t{256} << 20;  // a longer record is kResourceExhausted
};

namespace internal {
// Where a writer's bytes go and a reader's come from (a plain file or a zlib gzip stream).
class ByteSink;
class ByteSource;
}  // namespace internal

class TFRecordWriter {
 public:
  // Creates (truncates) path. kNotFound / kPermissionDenied / kInternal when it cannot be opened.
  static absl::StatusOr<TFRecordWriter> open(const std::string& path, TFRecordWriterOptions options = {});
  TFRecordWriter(TFRecordWriter&&) noexcept;
  TFRecordWriter& operator=(TFRecordWriter&&) noexcept;
  ~TFRecordWriter();  // closes the file; call close() first to see its errors

  // Appends one record. kFailedPrecondition after close(); kInternal on a write error (disk full).
  absl::Status write(std::string_view record);
  // Hands everything written so far to the operating system (readers in other processes can see it).
  absl::Status flush();
  // Flushes and closes; later calls to write() fail, a second close() is OK.
  absl::Status close();

  const std::string& path() const { return path_; }
  // Bytes of the record stream written so far (uncompressed), i.e. the offset of the next record.
  uint64_t offset() const { return offset_; }

 private:
  TFRecordWriter(std::string path, std::unique_ptr<internal::ByteSink> sink);
  std::string path_;
  std::unique_ptr<internal::ByteSink> sink_;
  uint64_t offset_ = 0;
};

class TFRecordReader {
 public:
  // kNotFound when path cannot be opened.
  static absl::StatusOr<TFRecordReader> open(const std::string& path, TFRecordReaderOptions options = {});
  TFRecordReader(TFRecordReader&&) noexcept;
  TFRecordReader& operator=(TFRecordReader&&) noexcept;
  ~TFRecordReader();

  // The next record, or nullopt at a clean end of file (no byte after the last whole record). Calling it
  // again later returns records appended since, so a file that another process writes can be followed.
  // Errors name the file and the byte offset of the record: kDataLoss for a CRC mismatch or a record cut
  // short, kResourceExhausted for a length over max_record_bytes. After an error offset() still names the
  // bad record, and read_next() reports it again; seek() past it to go on.
  absl::StatusOr<std::optional<std::string>> read_next();

  // Byte offset (in the uncompressed stream) of the record read_next() reads next: save it with a dataset
  // iterator's state and seek() back to it to resume.
  uint64_t offset() const { return offset_; }
  // Positions the reader at offset, which should be one that offset() returned. Backward seeks in a GZIP
  // file decompress again from the start.
  absl::Status seek(uint64_t offset);

  const std::string& path() const { return path_; }

 private:
  TFRecordReader(std::string path, TFRecordReaderOptions options, std::unique_ptr<internal::ByteSource> source);
  absl::Status error(absl::StatusCode code, std::string_view what) const;
  std::string path_;
  TFRecordReaderOptions options_;
  std::unique_ptr<internal::ByteSource> source_;
  uint64_t offset_ = 0;
  bool reposition_ = false;  // seek to offset_ before reading (after an error or at the end of the file)
};

// Every record of a file, in order (the first error stops the read).
absl::StatusOr<std::vector<std::string>> load_tfrecords(const std::string& path, TFRecordReaderOptions options = {});
// Writes records to a new file at path.
absl::Status save_tfrecords(const std::string& path, const std::vector<std::string>& records,
                            TFRecordWriterOptions options = {});
// load_tfrecords / save_tfrecords that throw gradflow::Error.
std::vector<std::string> read_tfrecords(const std::string& path, TFRecordReaderOptions options = {});
void write_tfrecords(const std::string& path, const std::vector<std::string>& records,
                     TFRecordWriterOptions options = {});

}  // namespace gradflow
