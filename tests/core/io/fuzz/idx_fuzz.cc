// Fuzz target: load_idx (core/data/idx.cc) on arbitrary file bytes. Properties: no crash or huge
// allocation; failure is kDataLoss naming the file; for a plain (not gzip) file that loads, the header
// plus the tensor's bytes account for the whole file.
#include <cstdint>
#include <string>

#include "core/data/idx.h"
#include "tests/core/io/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const gradflow::fuzz::ScratchFile scratch("idx");
  const std::string& path = scratch.path();
  scratch.write(data, size);
  absl::StatusOr<gradflow::Tensor> t = gradflow::load_idx(path);
  if (!t.ok()) {
    GF_FUZZ_CHECK(t.status().code() == absl::StatusCode::kDataLoss, "%s", t.status().ToString().c_str());
    GF_FUZZ_CHECK(std::string(t.status().message()).find(path) == 0, "names the file");
    return 0;
  }
  bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  if (!gzip) {
    size_t expected = 4 + 4 * static_cast<size_t>(t->rank()) + t->numel() * gradflow::dtype_size(t->dtype());
    GF_FUZZ_CHECK(expected == size, "header + data = %zu bytes, file has %zu", expected, size);
  }
  return 0;
}
