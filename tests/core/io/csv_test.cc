// CSV: RFC 4180 quoting, type inference and given dtypes, and errors that name file, line and column.
#include "core/io/csv.h"

#include <gtest/gtest.h>

#include "tests/core/io/io_test_util.h"

namespace gradflow {
namespace {

using testing_io::has_error;

CsvColumns parse_ok(std::string_view text, const CsvOptions& options = {}) {
  absl::StatusOr<CsvColumns> cols = parse_csv(text, options, "t.csv");
  EXPECT_TRUE(cols.ok()) << cols.status();
  return cols.ok() ? *cols : CsvColumns{};
}

std::vector<std::string> names(const CsvColumns& cols) {
  std::vector<std::string> out;
  for (const auto& [name, t] : cols) out.push_back(name);
  return out;
}

TEST(Csv, InfersBoolIntAndFloatColumns) {
  CsvColumns cols = parse_ok("flag,count,score\ntrue,1,0.5\nFALSE,-20,3\nTrue,+3,-1e3\n");
  ASSERT_EQ(names(cols), (std::vector<std::string>{"flag", "count", "score"}));
  EXPECT_EQ(cols[0].second.dtype(), kBool);
  EXPECT_EQ(cols[1].second.dtype(), kI64);
  EXPECT_EQ(cols[2].second.dtype(), kF32);
  EXPECT_EQ(cols[0].second.to_vector<bool>(), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(cols[1].second.to_vector<int64_t>(), (std::vector<int64_t>{1, -20, 3}));
  EXPECT_EQ(cols[2].second.to_vector<float>(), (std::vector<float>{0.5f, 3.0f, -1000.0f}));
  EXPECT_EQ(cols[2].second.shape(), (Shape{3}));
}

TEST(Csv, Rfc4180Quoting) {
  // Quoted names with the delimiter, doubled quotes and a line break; CRLF records; a quoted number.
  CsvColumns cols = parse_ok("\"x, first\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n1,\"2\",3\r\n4,5,6");
  EXPECT_EQ(names(cols), (std::vector<std::string>{"x, first", "say \"hi\"", "two\nlines"}));
  EXPECT_EQ(cols[1].second.to_vector<int64_t>(), (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(cols[2].second.to_vector<int64_t>(), (std::vector<int64_t>{3, 6}));
}

TEST(Csv, SelectColumnsDropsTextAndKeepsLineNumbers) {
  std::string text = "id,comment,y\n1,\"fine, thanks\",0.5\n2,\"multi\nline\ncomment\",1.5\n3,ok,oops\n";
  CsvOptions options{.select_columns = {"y", "id"}};
  absl::StatusOr<CsvColumns> cols = parse_csv(text, options, "t.csv");
  // Record 3 starts on line 6, after the three-line quoted field.
  EXPECT_TRUE(has_error(cols.status(), absl::StatusCode::kInvalidArgument,
                        {"t.csv:6: column 3 (\"y\"): \"oops\" is not a number"}));
  text.replace(text.find("oops"), 4, "2.5");
  CsvColumns ok = parse_ok(text, options);
  EXPECT_EQ(names(ok), (std::vector<std::string>{"y", "id"}));
  EXPECT_EQ(ok[0].second.to_vector<float>(), (std::vector<float>{0.5f, 1.5f, 2.5f}));
  EXPECT_EQ(ok[1].second.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 3}));
}

TEST(Csv, GivenDtypesNoHeaderOtherDelimiterBlankLines) {
  CsvOptions options{.delimiter = ';', .header = false, .dtypes = {kF64, kI32, kU8, kBool, kF16}};
  CsvColumns cols = parse_ok("0.25; 7;255;1;1.5\n\n-1;-8;0;false;2\n\n", options);
  EXPECT_EQ(names(cols), (std::vector<std::string>{"column_0", "column_1", "column_2", "column_3", "column_4"}));
  EXPECT_EQ(cols[0].second.dtype(), kF64);
  EXPECT_EQ(cols[0].second.to_vector<double>(), (std::vector<double>{0.25, -1}));
  EXPECT_EQ(cols[1].second.to_vector<int32_t>(), (std::vector<int32_t>{7, -8}));
  EXPECT_EQ(cols[2].second.to_vector<uint8_t>(), (std::vector<uint8_t>{255, 0}));
  EXPECT_EQ(cols[3].second.to_vector<bool>(), (std::vector<bool>{true, false}));
  EXPECT_EQ(cols[4].second.dtype(), kF16);
  EXPECT_EQ(cols[4].second.to_vector<float>(), (std::vector<float>{1.5f, 2.0f}));
}

TEST(Csv, MissingValues) {
  EXPECT_TRUE(has_error(parse_csv("a,b\n1,\n", {}, "t.csv").status(), absl::StatusCode::kInvalidArgument,
                        {"t.csv:2: column 2 (\"b\"): empty value (set CsvOptions::missing_value to allow it)"}));
  CsvColumns cols = parse_ok("a,b\n1,\n,2.5\n", {.missing_value = -1});
  EXPECT_EQ(cols[0].second.to_vector<int64_t>(), (std::vector<int64_t>{1, -1}));
  EXPECT_EQ(cols[1].second.to_vector<float>(), (std::vector<float>{-1.0f, 2.5f}));
}

TEST(Csv, HeaderOnlyGivesEmptyColumns) {
  CsvColumns cols = parse_ok("a,b\n", {.dtypes = {kI32, kF32}});
  ASSERT_EQ(cols.size(), 2u);
  EXPECT_EQ(cols[0].second.shape(), (Shape{0}));
  EXPECT_EQ(cols[0].second.dtype(), kI32);
}

TEST(Csv, ErrorsNameFileLineAndColumn) {
  struct Case {
    std::string text;
    CsvOptions options;
    std::string message;
  };
  std::vector<Case> cases = {
      {"a,b\n1,2\n3,x\n", {}, "t.csv:3: column 2 (\"b\"): \"x\" is not a number"},
      {"a,b\n1,2\n3,4,5\n", {}, "t.csv:3: 3 fields, but the header has 2"},
      {"a,b\n1,\"2\n3,4\n", {}, "t.csv:2: column 2: a quoted field is never closed"},
      {"a,b\n1,2\"x\n", {}, "t.csv:2: column 2: a quote inside an unquoted field"},
      {"a,b\n1,\"2\"x\n", {}, "t.csv:2: column 2: unexpected character 'x' after a closing quote"},
      {"a\n1\n2.5\n", {.dtypes = {kI64}}, "t.csv:3: column 1 (\"a\"): \"2.5\" is not an integer (dtype i64)"},
      {"a\n300\n", {.dtypes = {kU8}}, "t.csv:2: column 1 (\"a\"): 300 is out of range for dtype u8"},
      {"a\nmaybe\n", {.dtypes = {kBool}}, "t.csv:2: column 1 (\"a\"): \"maybe\" is not a bool"},
      {"a,b\n1,2\n", {.select_columns = {"c"}}, "t.csv: select_columns names \"c\", which is not a column"},
      {"a,b\n1,2\n", {.dtypes = {kF32}}, "t.csv: 1 dtypes given for 2 columns"},
      {"", {}, "t.csv: no records (the file is empty)"},
  };
  for (const Case& c : cases) {
    EXPECT_TRUE(
        has_error(parse_csv(c.text, c.options, "t.csv").status(), absl::StatusCode::kInvalidArgument, {c.message}))
        << c.text;
  }
}

TEST(Csv, ReadsFilesAndNamesThemInErrors) {
  testing_io::ScratchDir dir("csv");
  std::string path = dir.file("data.csv");
  testing_io::write_file(path, "x,label\n0.5,1\n1.5,0\n");
  absl::StatusOr<CsvColumns> cols = read_csv(path);
  ASSERT_TRUE(cols.ok()) << cols.status();
  EXPECT_EQ((*cols)[1].second.to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  testing_io::write_file(path, "x,label\n0.5,cat\n");
  EXPECT_TRUE(
      has_error(read_csv(path).status(), absl::StatusCode::kInvalidArgument, {path + ":2: column 2 (\"label\")"}));
  EXPECT_TRUE(
      has_error(read_csv(dir.file("missing.csv")).status(), absl::StatusCode::kNotFound, {dir.file("missing.csv")}));
}

}  // namespace
}  // namespace gradflow
