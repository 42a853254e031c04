// Fuzz target: TFRecordReader on arbitrary file bytes (plain, and GZIP when the bytes start like gzip).
// Properties: no crash or huge allocation; every error is kDataLoss/kResourceExhausted naming the file and
// the record's offset, which offset() keeps; offsets advance by 16 + record size; and for a plain file the
// records read, framed again, reproduce the file's bytes up to where reading stopped.
#include <cstdint>
#include <string>

#include "core/io/crc32c.h"
#include "core/io/tfrecord.h"
#include "tests/core/io/fuzz/fuzz_common.h"

namespace {

std::string frame(const std::string& record) {
  std::string out(12, '\0');
  uint64_t n = record.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  uint32_t c = gradflow::crc32c::mask(gradflow::crc32c::value(out.data(), 8));
  for (int i = 0; i < 4; ++i) out[8 + i] = static_cast<char>(c >> (8 * i));
  out += record;
  c = gradflow::crc32c::mask(gradflow::crc32c::value(record));
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(c >> (8 * i)));
  return out;
}

void read_all(const std::string& path, const uint8_t* data, size_t size, gradflow::Compression compression) {
  using gradflow::TFRecordReader;
  absl::StatusOr<TFRecordReader> reader =
      TFRecordReader::open(path, {.compression = compression, .max_record_bytes = 1 << 20});
  if (!reader.ok()) {
    GF_FUZZ_CHECK(compression == gradflow::Compression::kGzip, "a plain file must open: %s",
               reader.status().ToString().c_str());
    return;
  }
  std::string reframed;
  absl::StatusOr<std::optional<std::string>> first = std::optional<std::string>();
  for (int i = 0; i < 100000; ++i) {
    uint64_t before = reader->offset();
    absl::StatusOr<std::optional<std::string>> record = reader->read_next();
    if (i == 0) first = record;
    if (!record.ok()) {
      absl::StatusCode code = record.status().code();
      GF_FUZZ_CHECK(code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kResourceExhausted, "code %s",
                 record.status().ToString().c_str());
      std::string message(record.status().message());
      GF_FUZZ_CHECK(message.find(path) == 0, "error names the file: %s", message.c_str());
      GF_FUZZ_CHECK(message.find("byte offset " + std::to_string(before)) != std::string::npos, "offset: %s",
                 message.c_str());
      GF_FUZZ_CHECK(reader->offset() == before, "offset kept after an error");
      break;
    }
    if (!record->has_value()) {
      GF_FUZZ_CHECK(compression != gradflow::Compression::kNone || before == size, "clean EOF only at the end");
      break;
    }
    GF_FUZZ_CHECK(reader->offset() == before + 16 + (*record)->size(), "offset advances by the framed size");
    if (compression == gradflow::Compression::kNone) reframed += frame(**record);
  }
  if (compression == gradflow::Compression::kNone) {
    GF_FUZZ_CHECK(reframed.size() <= size && reframed == std::string(reinterpret_cast<const char*>(data), reframed.size()),
               "records reframed reproduce the file");
  }
  // Seeking back to the start reads the first record again, with the same outcome.
  GF_FUZZ_CHECK(reader->seek(0).ok(), "seek to 0");
  absl::StatusOr<std::optional<std::string>> again = reader->read_next();
  GF_FUZZ_CHECK(again.status() == first.status(), "same error after seek(0)");
  GF_FUZZ_CHECK(!again.ok() || *again == *first, "same first record after seek(0)");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const gradflow::fuzz::ScratchFile scratch("tfrecord");
  const std::string& path = scratch.path();
  scratch.write(data, size);
  read_all(path, data, size, gradflow::Compression::kNone);
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) read_all(path, data, size, gradflow::Compression::kGzip);
  return 0;
}
