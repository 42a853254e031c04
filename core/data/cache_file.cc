#include "core/data/cache_file.h"

#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <random>
#include <vector>

#include "core/data/internal.h"
#include "core/tensor/error.h"

namespace gradflow::data_internal {
namespace {

constexpr char kMagic[8] = {'G', 'F', 'D', 'C', 'A', 'C', 'H', 'E'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kEndMarker = ~uint64_t{0};
constexpr int64_t kHeaderSize = 12;

// The format is little-endian; so are the machines this builds for (x86-64, aarch64).
static_assert(std::endian::native == std::endian::little, "cache files assume a little-endian host");

bool write_all(std::FILE* f, const void* data, size_t n) { return std::fwrite(data, 1, n, f) == n; }

template <typename T>
bool write_value(std::FILE* f, T v) {
  return write_all(f, &v, sizeof v);
}

std::string io_error(const std::string& path, const char* what) {
  return str_cat(path, ": ", what, " failed (", std::strerror(errno), ")");
}

// A name no other writer (thread, process or host sharing the directory) picks.
std::string temp_name(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  return str_cat(path, ".tmp-", getpid(), "-", salt, "-", counter.fetch_add(1));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CacheFileWriter>> CacheFileWriter::create(const std::string& path) {
  std::string tmp = temp_name(path);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return absl::NotFoundError(io_error(tmp, "cache: create"));
  std::unique_ptr<CacheFileWriter> w(new CacheFileWriter(path, tmp, f));
  if (!write_all(f, kMagic, sizeof kMagic) || !write_value(f, kVersion)) {
    return absl::DataLossError(io_error(tmp, "cache: write"));
  }
  return w;
}

CacheFileWriter::~CacheFileWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(tmp_path_.c_str());
  }
}

absl::Status CacheFileWriter::append(const Element& element) {
  std::vector<uint8_t> payload = State::to_cbor(element_to_state(element));
  uint32_t crc = static_cast<uint32_t>(crc32_z(0L, payload.data(), payload.size()));
  if (!write_value<uint64_t>(file_, payload.size()) || !write_all(file_, payload.data(), payload.size()) ||
      !write_value(file_, crc)) {
    return absl::DataLossError(io_error(tmp_path_, "cache: write"));
  }
  ++count_;
  return absl::OkStatus();
}

absl::Status CacheFileWriter::finish() {
  std::FILE* f = file_;
  bool ok = write_value(f, kEndMarker) && write_value<uint64_t>(f, count_) && std::fflush(f) == 0 &&
            fsync(fileno(f)) == 0;
  if (!ok) return absl::DataLossError(io_error(tmp_path_, "cache: write"));
  file_ = nullptr;
  if (std::fclose(f) != 0) {
    std::remove(tmp_path_.c_str());
    return absl::DataLossError(io_error(tmp_path_, "cache: close"));
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    std::remove(tmp_path_.c_str());
    return absl::InternalError(io_error(path_, "cache: rename"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CacheFileReader>> CacheFileReader::open(const std::string& path,
                                                                       std::optional<int64_t> offset, int64_t index) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(io_error(path, "cache: open"));
  std::fseek(f, 0, SEEK_END);
  int64_t size = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  std::unique_ptr<CacheFileReader> r(new CacheFileReader(path, f, size));
  char magic[8];
  uint32_t version = 0;
  if (std::fread(magic, 1, 8, f) != 8 || std::memcmp(magic, kMagic, 8) != 0 ||
      std::fread(&version, sizeof version, 1, f) != 1) {
    return absl::DataLossError(str_cat(path, ": not a gradflow cache file (no GFDCACHE header)"));
  }
  if (version != kVersion) {
    return absl::DataLossError(str_cat(path, ": cache file version ", version, ", this build reads ", kVersion));
  }
  r->offset_ = kHeaderSize;
  if (offset) {
    if (*offset < kHeaderSize || *offset > size || std::fseek(f, *offset, SEEK_SET) != 0) {
      return absl::DataLossError(str_cat(path, ": saved position ", *offset, " is outside the ", size, "-byte file"));
    }
    r->offset_ = *offset;
    r->index_ = index;
  }
  return r;
}

CacheFileReader::~CacheFileReader() { std::fclose(file_); }

absl::StatusOr<std::optional<Element>> CacheFileReader::next() {
  auto truncated = [&] {
    return absl::DataLossError(str_cat(path_, ": truncated cache file (", size_, " bytes, ended inside record ",
                                       index_, " at byte ", offset_, ")"));
  };
  uint64_t length = 0;
  if (std::fread(&length, sizeof length, 1, file_) != 1) return truncated();
  if (length == kEndMarker) {
    uint64_t count = 0;
    if (std::fread(&count, sizeof count, 1, file_) != 1) return truncated();
    if (static_cast<int64_t>(count) != index_) {
      return absl::DataLossError(
          str_cat(path_, ": cache file's end marker says ", count, " elements but ", index_, " were read"));
    }
    return std::optional<Element>();
  }
  // Checked against the file size before allocating, so a corrupt length cannot ask for terabytes.
  if (length > static_cast<uint64_t>(size_ - offset_)) return truncated();
  std::vector<uint8_t> payload(length);
  uint32_t crc = 0;
  if (std::fread(payload.data(), 1, length, file_) != length || std::fread(&crc, sizeof crc, 1, file_) != 1) {
    return truncated();
  }
  if (crc != static_cast<uint32_t>(crc32_z(0L, payload.data(), length))) {
    return absl::DataLossError(str_cat(path_, ": checksum mismatch in record ", index_, " at byte ", offset_));
  }
  Element e;
  try {
    e = element_from_state(State::from_cbor(payload));
  } catch (const std::exception& ex) {
    return absl::DataLossError(str_cat(path_, ": record ", index_, " is malformed (", ex.what(), ")"));
  }
  offset_ += static_cast<int64_t>(sizeof length + length + sizeof crc);
  ++index_;
  return std::optional<Element>(std::move(e));
}

}  // namespace gradflow::data_internal
