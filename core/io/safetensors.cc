#include "core/io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/tensor/creation.h"
#include "core/tensor/error.h"
#include "nlohmann/json.hpp"

namespace gradflow {
namespace {

absl::Status corrupt(std::string_view file, const std::string& what) {
  return absl::DataLossError(str_cat(file, ": not a valid safetensors file: ", what));
}

constexpr std::pair<DType, const char*> kNames[] = {{kF64, "F64"}, {kF32, "F32"}, {kF16, "F16"}, {kBF16, "BF16"},
                                                    {kI64, "I64"}, {kI32, "I32"}, {kU8, "U8"},   {kBool, "BOOL"}};

}  // namespace

std::string_view safetensors_dtype_name(DType dtype) {
  for (const auto& [d, name] : kNames) {
    if (d == dtype) return name;
  }
  return "?";
}

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  for (const auto& [d, n] : kNames) {
    if (name == n) return d;
  }
  return std::nullopt;
}

absl::StatusOr<SafetensorsEncoding> encode_safetensors(const std::string& path,
                                                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                                                       const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, Tensor>> sorted;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__") {
      return absl::InvalidArgumentError(str_cat(path, ": tensor name \"", name, "\" is not allowed"));
    }
    if (!t.defined()) return absl::InvalidArgumentError(str_cat(path, ": tensor \"", name, "\" is undefined"));
    sorted.emplace_back(name, t.to(kCPU).contiguous());
  }
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    size_t sa = dtype_size(a.second.dtype()), sb = dtype_size(b.second.dtype());
    return sa != sb ? sa > sb : a.first < b.first;
  });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i].first == sorted[i - 1].first) {
      return absl::InvalidArgumentError(str_cat(path, ": tensor name \"", sorted[i].first, "\" appears twice"));
    }
  }
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : sorted) {
    uint64_t bytes = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype())},
                    {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // the data then starts 8-byte aligned
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  out += json;

  SafetensorsEncoding encoding{std::move(out), {}};
  for (auto& [name, t] : sorted) encoding.tensors.push_back(std::move(t));
  return encoding;
}

absl::Status write_encoded_safetensors(const std::string& path, const SafetensorsEncoding& encoding,
                                       const SafetensorsWriteOptions& options) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::UnavailableError(str_cat(path, ": cannot create: ", std::strerror(errno)));
  // 16 MiB at a time; when syncing, each chunk's writeback starts at once (sync_file_range), so the disk
  // works while the next chunk is copied in.
  constexpr size_t kChunk = size_t{16} << 20;
  off_t written = 0;
  auto write_all = [&](const char* data, size_t size) {
    while (size > 0) {
      size_t part = std::min(size, kChunk);
      for (size_t done = 0; done < part;) {
        ssize_t w = ::write(fd, data + done, part - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        done += static_cast<size_t>(w);
      }
      if (options.fsync) ::sync_file_range(fd, written, static_cast<off_t>(part), SYNC_FILE_RANGE_WRITE);
      written += static_cast<off_t>(part);
      data += part;
      size -= part;
    }
    return true;
  };
  bool ok = write_all(encoding.header.data(), encoding.header.size());
  for (const Tensor& t : encoding.tensors) {
    if (!ok) break;
    ok = write_all(static_cast<const char*>(t.raw_data()), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));
  }
  if (ok && options.fsync) ok = ::fsync(fd) == 0;
  // Durable now: drop its pages from the page cache. A checkpoint is rarely read back by the process that
  // wrote it, and freeing 400 MB of cached pages costs ~100 ms wherever it happens (here, or when pruning
  // deletes the file); here it overlaps the checkpoint's hashing thread and leaves the cache to training data.
  if (ok && options.fsync) ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  int saved = errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    saved = errno;
  }
  if (!ok) return absl::UnavailableError(str_cat(path, ": write failed: ", std::strerror(saved)));
  return absl::OkStatus();
}

absl::Status write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                               const std::map<std::string, std::string>& metadata,
                               const SafetensorsWriteOptions& options) {
  absl::StatusOr<SafetensorsEncoding> encoding = encode_safetensors(path, tensors, metadata);
  if (!encoding.ok()) return encoding.status();
  return write_encoded_safetensors(path, *encoding, options);
}

absl::StatusOr<SafetensorsFile> parse_safetensors(std::string_view bytes, std::string_view file,
                                                  const SafetensorsReadOptions& options) {
  if (bytes.size() < 8) return corrupt(file, str_cat("only ", bytes.size(), " bytes, less than the 8-byte header size"));
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  if (n > options.max_header_bytes) {
    return corrupt(file, str_cat("header size ", n, " exceeds the limit of ", options.max_header_bytes, " bytes"));
  }
  if (n > bytes.size() - 8) return corrupt(file, str_cat("header size ", n, " but only ", bytes.size() - 8, " bytes follow"));
  nlohmann::json header = nlohmann::json::parse(bytes.substr(8, n), nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return corrupt(file, "the header is not a JSON object");
  std::string_view data = bytes.substr(8 + n);

  SafetensorsFile out;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) return corrupt(file, "\"__metadata__\" is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) return corrupt(file, str_cat("metadata \"", m.key(), "\" is not a string"));
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    std::string where = str_cat("tensor \"", name, "\": ");
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets")) {
      return corrupt(file, where + "needs dtype, shape and data_offsets");
    }
    const nlohmann::json &dt = entry["dtype"], &shape = entry["shape"], &offsets = entry["data_offsets"];
    if (!dt.is_string()) return corrupt(file, where + "dtype is not a string");
    std::optional<DType> dtype = dtype_from_safetensors(dt.get<std::string>());
    if (!dtype) return corrupt(file, where + str_cat("unsupported dtype ", dt.dump()));
    if (!shape.is_array()) return corrupt(file, where + "shape is not an array");
    Shape dims;
    uint64_t elements = 1;
    for (const nlohmann::json& d : shape) {
      if (!d.is_number_unsigned()) return corrupt(file, where + str_cat("shape ", shape.dump(), " has a bad dimension"));
      uint64_t v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (v != 0 && elements > std::numeric_limits<uint64_t>::max() / v)) {
        return corrupt(file, where + str_cat("shape ", shape.dump(), " is too large"));
      }
      elements *= v;
      dims.push_back(static_cast<int64_t>(v));
    }
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      return corrupt(file, where + "data_offsets is not [begin, end]");
    }
    uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    uint64_t item = dtype_size(*dtype);
    if (elements > std::numeric_limits<uint64_t>::max() / item) return corrupt(file, where + "too many bytes");
    if (begin > end || end > data.size()) {
      return corrupt(file, where + str_cat("data_offsets [", begin, ", ", end, "] outside the ", data.size(), " data bytes"));
    }
    if (end - begin != elements * item) {
      return corrupt(file, where + str_cat("data_offsets hold ", end - begin, " bytes but ", dt.get<std::string>(), " ",
                                           shape.dump(), " needs ", elements * item));
    }
    spans.push_back({begin, end, name});
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin || (a.begin == b.begin && a.end < b.end); });
  uint64_t covered = 0;
  for (const Span& s : spans) {
    if (s.begin != covered) {
      return corrupt(file, str_cat("tensor \"", s.name, "\" starts at byte ", s.begin, " of the data, expected ", covered,
                                   s.begin < covered ? " (it overlaps another)" : " (a gap)"));
    }
    covered = s.end;
  }
  if (covered != data.size()) {
    return corrupt(file, str_cat("the tensors cover ", covered, " of the ", data.size(), " data bytes"));
  }
  for (const Span& s : spans) {
    const nlohmann::json& entry = header[s.name];
    DType dtype = *dtype_from_safetensors(entry["dtype"].get<std::string>());
    Shape dims;
    for (const nlohmann::json& d : entry["shape"]) dims.push_back(d.get<int64_t>());
    Tensor t = empty(dims, dtype, kCPU);
    if (s.end > s.begin) std::memcpy(t.raw_data(), data.data() + s.begin, s.end - s.begin);
    out.tensors.emplace(s.name, std::move(t));
  }
  return out;
}

absl::StatusOr<SafetensorsFile> read_safetensors(const std::string& path, const SafetensorsReadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(str_cat(path, ": cannot open"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(str_cat(path, ": read failed"));
  std::string bytes = buffer.str();
  return parse_safetensors(bytes, path, options);
}

}  // namespace gradflow
