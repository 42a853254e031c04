// CSV files (RFC 4180) read into one gradflow Tensor per column.
//
//   absl::StatusOr<std::vector<std::pair<std::string, Tensor>>> cols = read_csv("iris.csv");
//   // [("sepal_length", f32 [150]), ..., ("species", i64 [150])]
//   auto typed = read_csv("data.csv", {.dtypes = {kF64, kI32}, .select_columns = {"x", "label"}});
//
// Fields may be quoted ("a, b", "say ""hi""", newlines inside quotes); records end with LF or CRLF; blank
// lines are skipped. Without dtypes, each column's type is inferred from all its values: kBool when every
// value is true/false (any case), else kI64 when every value is an integer, else kF32. Tensors hold numbers
// only: a column of words is an error unless select_columns leaves it out.
// Every error is kInvalidArgument and names the file, the line and the column, e.g.
//   data.csv:7: column 2 ("label"): "cat" is not an integer (dtype i64)
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/tensor/tensor.h"

namespace gradflow {

struct CsvOptions {
  char delimiter = ',';
  // The first record names the columns; without a header they are named column_0, column_1, ...
  bool header = true;
  // The columns to return, by name, in this order; empty: all columns in file order.
  std::vector<std::string> select_columns;
  // One dtype per returned column (any dtype: kF32 kF64 kF16 kBF16 kI32 kI64 kU8 kBool); empty: inferred.
  std::vector<DType> dtypes;
  // The value of an empty field; without it an empty field is an error.
  std::optional<double> missing_value;
};

using CsvColumns = std::vector<std::pair<std::string, Tensor>>;

// Reads a CSV file into 1-D tensors of equal length (the number of data records). kNotFound when the file
// cannot be opened; kInvalidArgument for malformed CSV, a bad value or options that do not fit the file.
absl::StatusOr<CsvColumns> read_csv(const std::string& path, const CsvOptions& options = {});
// The same for CSV text in memory; source is the name errors give in place of a path.
absl::StatusOr<CsvColumns> parse_csv(std::string_view text, const CsvOptions& options = {},
                                     std::string_view source = "<csv>");

}  // namespace gradflow
