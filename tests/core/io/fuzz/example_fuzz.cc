// Fuzz target: parse_example on arbitrary bytes. Properties: no crash; failure is kDataLoss; a parsed
// Example serializes to bytes that parse again to the same serialization (a fixed point).
#include <cstdint>
#include <string>

#include "core/io/example.h"
#include "tests/core/io/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gradflow::fuzz::silence_protobuf_logs();
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<gradflow::Example> example = gradflow::parse_example(bytes);
  if (!example.ok()) {
    GF_FUZZ_CHECK(example.status().code() == absl::StatusCode::kDataLoss, "%s", example.status().ToString().c_str());
    return 0;
  }
  std::string once = gradflow::serialize_example(*example);
  absl::StatusOr<gradflow::Example> again = gradflow::parse_example(once);
  GF_FUZZ_CHECK(again.ok(), "our own serialization parses: %s", again.status().ToString().c_str());
  GF_FUZZ_CHECK(gradflow::serialize_example(*again) == once, "serialization is a fixed point");
  return 0;
}
