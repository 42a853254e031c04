// Fuzz target: parse_safetensors (core/io/safetensors.cc) on arbitrary bytes. Properties: no crash or
// huge allocation; failure is kDataLoss naming the file; a file that parses holds exactly its tensors'
// bytes after the header, and writing what was read and parsing that again gives the same tensors.
#include <cstdint>
#include <cstring>
#include <string>

#include "core/io/safetensors.h"
#include "tests/core/io/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const gradflow::fuzz::ScratchFile scratch("safetensors");
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<gradflow::SafetensorsFile> f = gradflow::parse_safetensors(bytes, "fuzz.safetensors");
  if (!f.ok()) {
    GF_FUZZ_CHECK(f.status().code() == absl::StatusCode::kDataLoss, "%s", f.status().ToString().c_str());
    GF_FUZZ_CHECK(std::string(f.status().message()).find("fuzz.safetensors") == 0, "names the file");
    return 0;
  }
  uint64_t header = 0;
  for (int i = 0; i < 8; ++i) header |= static_cast<uint64_t>(data[i]) << (8 * i);
  uint64_t tensor_bytes = 0;
  for (const auto& [name, t] : f->tensors) tensor_bytes += t.numel() * gradflow::dtype_size(t.dtype());
  GF_FUZZ_CHECK(8 + header + tensor_bytes == size, "header + tensors = %llu bytes, file has %zu",
                static_cast<unsigned long long>(8 + header + tensor_bytes), size);
  std::vector<std::pair<std::string, gradflow::Tensor>> again(f->tensors.begin(), f->tensors.end());
  std::map<std::string, std::string> metadata = f->metadata;
  absl::Status written = gradflow::write_safetensors(scratch.path(), again, metadata);
  if (!written.ok()) {
    // Names the writer refuses (empty) can still come from a file; nothing else may fail.
    GF_FUZZ_CHECK(f->tensors.count("") == 1, "%s", written.ToString().c_str());
    return 0;
  }
  absl::StatusOr<gradflow::SafetensorsFile> reread = gradflow::read_safetensors(scratch.path());
  GF_FUZZ_CHECK(reread.ok(), "%s", reread.status().ToString().c_str());
  GF_FUZZ_CHECK(reread->tensors.size() == f->tensors.size() && reread->metadata == f->metadata, "same contents");
  for (const auto& [name, t] : f->tensors) {
    const gradflow::Tensor& u = reread->tensors.at(name);
    size_t n = t.numel() * gradflow::dtype_size(t.dtype());
    GF_FUZZ_CHECK(u.shape() == t.shape() && u.dtype() == t.dtype() && (n == 0 || std::memcmp(u.raw_data(), t.raw_data(), n) == 0),
                  "tensor %s differs after a write and a read", name.c_str());
  }
  return 0;
}
