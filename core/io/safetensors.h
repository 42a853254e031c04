// safetensors files (Hugging Face's format, what checkpoints store variables in; loadable by the Python
// `safetensors` package and by PyTorch):
//   uint64 header size N (little-endian) | N bytes of JSON | the tensors' bytes, back to back
// where the JSON maps each name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// (offsets into the bytes after the header) plus an optional "__metadata__" map of strings.
//
//   write_safetensors("model.safetensors", {{"dense/kernel", w}, {"dense/bias", b}}, {{"step", "100"}});
//   absl::StatusOr<SafetensorsFile> f = read_safetensors("model.safetensors");
//   Tensor w2 = f->tensors.at("dense/kernel");
//
// The reader trusts nothing: the header size, JSON, dtypes, shapes (and their byte counts, overflow
// checked) and offsets are validated before anything is allocated for them; offsets must tile the data
// exactly (no gaps, no overlaps), as the reference implementation requires. Errors are kDataLoss naming
// the file and what is wrong.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/tensor/tensor.h"

namespace gradflow {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;              // on the CPU, by name
  std::map<std::string, std::string> metadata;        // "__metadata__"
};

struct SafetensorsWriteOptions {
  // Flush the file to stable storage before returning (checkpoints want it). The writeback of each
  // 16 MiB chunk is started as soon as it is written, so the final fsync has little left to wait for, and
  // the synced file's pages are dropped from the page cache.
  bool fsync = false;
};

// A file's bytes before they are written: `header` (size, JSON, padding), then each tensor's bytes in
// `tensors` order (CPU, row-major). Checkpoints hash these pieces on one thread while another writes them.
struct SafetensorsEncoding {
  std::string header;
  std::vector<Tensor> tensors;
};

struct SafetensorsReadOptions {
  uint64_t max_header_bytes = uint64_t{100} << 20;  // as the reference implementation
};

// Writes tensors (any device; copied to the CPU, row-major) and metadata to path, replacing it. Names must
// be unique and non-empty, and not "__metadata__". Tensors are laid out by descending element size, then
// name, after a header padded to 8 bytes, so each one starts aligned to its element size.
absl::Status write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                               const std::map<std::string, std::string>& metadata = {},
                               const SafetensorsWriteOptions& options = {});

// The layout write_safetensors writes (the same checks; path labels errors), and writing it.
absl::StatusOr<SafetensorsEncoding> encode_safetensors(const std::string& path,
                                                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                                                       const std::map<std::string, std::string>& metadata = {});
absl::Status write_encoded_safetensors(const std::string& path, const SafetensorsEncoding& encoding,
                                       const SafetensorsWriteOptions& options = {});

absl::StatusOr<SafetensorsFile> read_safetensors(const std::string& path, const SafetensorsReadOptions& options = {});

// The same, on the bytes of a file; file_name labels errors.
absl::StatusOr<SafetensorsFile> parse_safetensors(std::string_view bytes, std::string_view file_name,
                                                  const SafetensorsReadOptions& options = {});

// "F32", "BF16", ... for a dtype, and back (nullopt for names gradflow has no dtype for, e.g. "I16").
std::string_view safetensors_dtype_name(DType dtype);
std::optional<DType> dtype_from_safetensors(std::string_view name);

}  // namespace gradflow
