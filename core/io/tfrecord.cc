#include "core/io/tfrecord.h"

#include <algorithm>
#include <cstring>

#include "core/io/crc32c.h"
#include "core/io/file_stream.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace {

constexpr size_t kHeaderBytes = 12;  // uint64 length + uint32 masked crc of the length
constexpr size_t kFooterBytes = 4;   // uint32 masked crc of the data
// Record data is read in pieces of at most this size, so memory grows only with bytes actually present.
constexpr size_t kReadChunkBytes = size_t{16} << 20;

void put_le64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
void put_le32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint64_t get_le64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint32_t get_le32(const unsigned char* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

}  // namespace

// ---- writer ----

TFRecordWriter::TFRecordWriter(std::string path, std::unique_ptr<internal::ByteSink> sink)
    : path_(std::move(path)), sink_(std::move(sink)) {}
TFRecordWriter::TFRecordWriter(TFRecordWriter&&) noexcept = default;
TFRecordWriter& TFRecordWriter::operator=(TFRecordWriter&&) noexcept = default;
TFRecordWriter::~TFRecordWriter() = default;  // the sink closes itself

absl::StatusOr<TFRecordWriter> TFRecordWriter::open(const std::string& path, TFRecordWriterOptions options) {
  absl::StatusOr<std::unique_ptr<internal::ByteSink>> sink =
      internal::ByteSink::open(path, options.compression, options.gzip_level);
  if (!sink.ok()) return sink.status();
  return TFRecordWriter(path, std::move(*sink));
}

absl::Status TFRecordWriter::write(std::string_view record) {
  if (!sink_) return absl::FailedPreconditionError(str_cat(path_, ": write after the writer was moved from"));
  unsigned char header[kHeaderBytes];
  put_le64(header, record.size());
  put_le32(header + 8, crc32c::mask(crc32c::value(header, 8)));
  unsigned char footer[kFooterBytes];
  put_le32(footer, crc32c::mask(crc32c::value(record)));
  absl::Status s = sink_->write(header, sizeof header);
  if (s.ok()) s = sink_->write(record.data(), record.size());
  if (s.ok()) s = sink_->write(footer, sizeof footer);
  if (s.ok()) offset_ += kHeaderBytes + record.size() + kFooterBytes;
  return s;
}

absl::Status TFRecordWriter::flush() {
  if (!sink_) return absl::FailedPreconditionError(str_cat(path_, ": flush after the writer was moved from"));
  return sink_->flush();
}

absl::Status TFRecordWriter::close() { return sink_ ? sink_->close() : absl::OkStatus(); }

// ---- reader ----

TFRecordReader::TFRecordReader(std::string path, TFRecordReaderOptions options,
                               std::unique_ptr<internal::ByteSource> source)
    : path_(std::move(path)), options_(options), source_(std::move(source)) {}
TFRecordReader::TFRecordReader(TFRecordReader&&) noexcept = default;
TFRecordReader& TFRecordReader::operator=(TFRecordReader&&) noexcept = default;
TFRecordReader::~TFRecordReader() = default;

absl::StatusOr<TFRecordReader> TFRecordReader::open(const std::string& path, TFRecordReaderOptions options) {
  absl::StatusOr<std::unique_ptr<internal::ByteSource>> source = internal::ByteSource::open(path, options.compression);
  if (!source.ok()) return source.status();
  return TFRecordReader(path, options, std::move(*source));
}

absl::Status TFRecordReader::error(absl::StatusCode code, std::string_view what) const {
  return absl::Status(code, str_cat(path_, ": record at byte offset ", offset_, ": ", what));
}

absl::StatusOr<std::optional<std::string>> TFRecordReader::read_next() {
  if (!source_) return absl::FailedPreconditionError(str_cat(path_, ": read after the reader was moved from"));
  if (reposition_) {
    absl::Status s = source_->seek(offset_);
    if (!s.ok()) return s;
    reposition_ = false;
  }
  reposition_ = true;  // cleared on success: any early return leaves the source mid-record
  auto read = [&](void* buf, size_t n) { return source_->read(buf, n); };

  unsigned char header[kHeaderBytes];
  absl::StatusOr<size_t> got = read(header, sizeof header);
  if (!got.ok()) return error(absl::StatusCode::kDataLoss, std::string(got.status().message()));
  if (*got == 0) {  // stays set: the next call seeks again, which clears EOF and sees records appended since
    return std::optional<std::string>();
  }
  if (*got < kHeaderBytes) {
    return error(absl::StatusCode::kDataLoss, str_cat("truncated header (", *got, " of ", kHeaderBytes, " bytes)"));
  }
  uint64_t length = get_le64(header);
  uint32_t length_crc = crc32c::mask(crc32c::value(header, 8));
  if (get_le32(header + 8) != length_crc) {
    return error(absl::StatusCode::kDataLoss, str_cat("length field fails its crc32c check (stored 0x", std::hex,
                                                      get_le32(header + 8), ", computed 0x", length_crc, ")"));
  }
  if (length > options_.max_record_bytes) {
    return error(absl::StatusCode::kResourceExhausted,
                 str_cat("length ", length, " exceeds the reader's limit of ", options_.max_record_bytes, " bytes"));
  }

  std::string data;
  while (data.size() < length) {  // grows with the bytes actually read: a lying length cannot allocate
    size_t have = data.size();
    size_t want = static_cast<size_t>(std::min<uint64_t>(length - have, kReadChunkBytes));
    data.resize(have + want);
    got = read(data.data() + have, want);
    if (!got.ok()) return error(absl::StatusCode::kDataLoss, std::string(got.status().message()));
    if (*got < want) {
      return error(absl::StatusCode::kDataLoss,
                   str_cat("truncated data (", have + *got, " of ", length, " bytes before end of file)"));
    }
  }
  unsigned char footer[kFooterBytes];
  got = read(footer, sizeof footer);
  if (!got.ok()) return error(absl::StatusCode::kDataLoss, std::string(got.status().message()));
  if (*got < kFooterBytes) {
    return error(absl::StatusCode::kDataLoss, str_cat("truncated data crc (", *got, " of ", kFooterBytes, " bytes)"));
  }
  uint32_t data_crc = crc32c::mask(crc32c::value(data));
  if (get_le32(footer) != data_crc) {
    return error(absl::StatusCode::kDataLoss, str_cat("data (", length, " bytes) fails its crc32c check (stored 0x",
                                                      std::hex, get_le32(footer), ", computed 0x", data_crc, ")"));
  }
  offset_ += kHeaderBytes + length + kFooterBytes;
  reposition_ = false;
  return std::optional<std::string>(std::move(data));
}

absl::Status TFRecordReader::seek(uint64_t offset) {
  if (!source_) return absl::FailedPreconditionError(str_cat(path_, ": seek after the reader was moved from"));
  absl::Status s = source_->seek(offset);
  if (!s.ok()) return s;
  offset_ = offset;
  reposition_ = false;
  return absl::OkStatus();
}

// ---- whole files ----

absl::StatusOr<std::vector<std::string>> load_tfrecords(const std::string& path, TFRecordReaderOptions options) {
  absl::StatusOr<TFRecordReader> reader = TFRecordReader::open(path, options);
  if (!reader.ok()) return reader.status();
  std::vector<std::string> records;
  while (true) {
    absl::StatusOr<std::optional<std::string>> record = reader->read_next();
    if (!record.ok()) return record.status();
    if (!record->has_value()) return records;
    records.push_back(std::move(**record));
  }
}

absl::Status save_tfrecords(const std::string& path, const std::vector<std::string>& records,
                            TFRecordWriterOptions options) {
  absl::StatusOr<TFRecordWriter> writer = TFRecordWriter::open(path, options);
  if (!writer.ok()) return writer.status();
  for (const std::string& record : records) {
    absl::Status s = writer->write(record);
    if (!s.ok()) return s;
  }
  return writer->close();
}

std::vector<std::string> read_tfrecords(const std::string& path, TFRecordReaderOptions options) {
  absl::StatusOr<std::vector<std::string>> records = load_tfrecords(path, options);
  throw_if_error(records.status());
  return std::move(*records);
}

void write_tfrecords(const std::string& path, const std::vector<std::string>& records, TFRecordWriterOptions options) {
  throw_if_error(save_tfrecords(path, records, options));
}

}  // namespace gradflow
