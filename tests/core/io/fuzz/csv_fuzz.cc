// Fuzz target: parse_csv on arbitrary text. The first byte picks the options: bit 0 header, bits 1-2 the
// delimiter (, ; tab |), bit 3 a missing_value, bit 4 select column_0 only (without a header).
// Properties: no crash; failure is kInvalidArgument naming the source; success gives 1-D columns of one length.
#include <cstdint>
#include <string>

#include "core/io/csv.h"
#include "tests/core/io/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint8_t mode = data[0];
  gradflow::CsvOptions options;
  options.header = (mode & 1) != 0;
  options.delimiter = ",;\t|"[(mode >> 1) & 3];
  if (mode & 8) options.missing_value = -1.0;
  if ((mode & 16) && !options.header) options.select_columns = {"column_0"};
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::StatusOr<gradflow::CsvColumns> columns = gradflow::parse_csv(text, options, "<fuzz>");
  if (!columns.ok()) {
    GF_FUZZ_CHECK(columns.status().code() == absl::StatusCode::kInvalidArgument, "%s",
               columns.status().ToString().c_str());
    GF_FUZZ_CHECK(columns.status().message().substr(0, 6) == "<fuzz>", "names the source");
    return 0;
  }
  GF_FUZZ_CHECK(!columns->empty(), "at least one column");
  int64_t rows = columns->front().second.numel();
  for (const auto& [name, tensor] : *columns) {
    GF_FUZZ_CHECK(tensor.rank() == 1 && tensor.numel() == rows, "columns are 1-D and of one length");
  }
  return 0;
}
