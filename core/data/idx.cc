#include "core/data/idx.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/tensor/error.h"

namespace gradflow {
namespace {

// Reads the whole file through zlib, which passes uncompressed files through unchanged.
absl::StatusOr<std::vector<unsigned char>> read_all(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(str_cat(path, ": cannot open (", std::strerror(errno), ")"));
  std::vector<unsigned char> data;
  unsigned char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) data.insert(data.end(), buf, buf + n);
  int err = 0;
  std::string msg = n < 0 ? gzerror(f, &err) : "";  // copied: gzclose frees zlib's message
  gzclose(f);
  if (n < 0) return absl::DataLossError(str_cat(path, ": read failed: ", msg));
  return data;
}

uint32_t big_endian32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

}  // namespace

absl::StatusOr<Tensor> load_idx(const std::string& path) {
  absl::StatusOr<std::vector<unsigned char>> bytes = read_all(path);
  if (!bytes.ok()) return bytes.status();
  const std::vector<unsigned char>& d = *bytes;
  if (d.size() < 4) return absl::DataLossError(str_cat(path, ": ", d.size(), " bytes is too short for an IDX header"));
  uint32_t magic = big_endian32(d.data());
  int type_code = (magic >> 8) & 0xff;
  int rank = magic & 0xff;
  if ((magic >> 16) != 0 || rank == 0) {
    return absl::DataLossError(str_cat(path, ": expected an IDX magic 0x00000TRR, got 0x", std::hex, magic));
  }
  DType dtype;
  switch (type_code) {
    case 0x08: dtype = kU8; break;
    case 0x0C: dtype = kI32; break;
    case 0x0D: dtype = kF32; break;
    case 0x0E: dtype = kF64; break;
    default:
      return absl::DataLossError(str_cat(path, ": unsupported IDX element type 0x", std::hex, type_code));
  }
  size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (d.size() < header) return absl::DataLossError(str_cat(path, ": truncated IDX header"));
  Shape shape;
  uint64_t count = 1;
  for (int i = 0; i < rank; ++i) {
    uint32_t dim = big_endian32(d.data() + 4 + 4 * i);
    shape.push_back(dim);
    count *= dim;
    if (count > d.size()) break;  // cannot fit: reported below without multiplying further
  }
  uint64_t expected = count * dtype_size(dtype);
  if (static_cast<int>(shape.size()) != rank || d.size() - header != expected) {
    return absl::DataLossError(str_cat(path, ": header ", shape_str(shape), " needs ", expected, " data bytes, file has ",
                                       d.size() - header));
  }
  Tensor t = empty(shape, dtype);
  unsigned char* out = static_cast<unsigned char*>(t.raw_data());
  size_t width = dtype_size(dtype);
  for (uint64_t i = 0; i < count; ++i) {  // big-endian elements to host order
    for (size_t b = 0; b < width; ++b) out[i * width + b] = d[header + i * width + (width - 1 - b)];
  }
  return t;
}

Tensor read_idx(const std::string& path) {
  absl::StatusOr<Tensor> t = load_idx(path);
  throw_if_error(t.status());
  return *t;
}

}  // namespace gradflow
