#include "core/io/csv.h"

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/io/file_stream.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace {

// Splits text into records of fields (RFC 4180), tracking the line each record starts on.
class Tokenizer {
 public:
  Tokenizer(std::string_view text, char delimiter, std::string_view source)
      : text_(text), delimiter_(delimiter), source_(source) {}

  // Reads the next non-blank record into fields; false at the end of the text.
  absl::StatusOr<bool> next(std::vector<std::string>& fields) {
    while (pos_ < text_.size() && (text_[pos_] == '\n' || (text_[pos_] == '\r' && peek(1) == '\n'))) {
      pos_ += text_[pos_] == '\r' ? 2 : 1;  // blank line
      ++line_;
    }
    if (pos_ >= text_.size()) return false;
    record_line_ = line_;
    fields.clear();
    while (true) {
      std::string field;
      bool is_quoted = pos_ < text_.size() && text_[pos_] == '"';
      absl::Status s = is_quoted ? quoted(field, fields.size() + 1) : unquoted(field, fields.size() + 1);
      if (!s.ok()) return s;
      fields.push_back(std::move(field));
      if (pos_ >= text_.size()) return true;
      char c = text_[pos_];
      if (c == delimiter_) {
        ++pos_;
        continue;
      }
      pos_ += c == '\r' ? 2 : 1;  // the field readers stop only at a delimiter, LF or CRLF
      ++line_;
      return true;
    }
  }

  int64_t record_line() const { return record_line_; }

 private:
  char peek(size_t ahead) const { return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0'; }
  bool at_record_end() const {
    return pos_ >= text_.size() || text_[pos_] == delimiter_ || text_[pos_] == '\n' ||
           (text_[pos_] == '\r' && peek(1) == '\n');
  }
  absl::Status error(int64_t line, std::string_view what) const {
    return absl::InvalidArgumentError(str_cat(source_, ":", line, ": ", what));
  }

  // column: the field's 1-based position in its record, for messages.
  absl::Status unquoted(std::string& field, size_t column) {
    size_t start = pos_;
    while (!at_record_end()) {
      if (text_[pos_] == '"') {
        return error(line_, str_cat("column ", column,
                                    ": a quote inside an unquoted field (quote the whole field "
                                    "and double the quotes inside it: \"say \"\"hi\"\"\")"));
      }
      ++pos_;
    }
    field.assign(text_.substr(start, pos_ - start));
    return absl::OkStatus();
  }

  absl::Status quoted(std::string& field, size_t column) {
    int64_t start_line = line_;
    ++pos_;  // opening quote
    while (true) {
      size_t quote = text_.find('"', pos_);
      if (quote == std::string_view::npos) {
        return error(start_line,
                     str_cat("column ", column, ": a quoted field is never closed (end of file inside quotes)"));
      }
      std::string_view piece = text_.substr(pos_, quote - pos_);
      for (char c : piece) line_ += c == '\n';
      field.append(piece);
      pos_ = quote + 1;
      if (pos_ < text_.size() && text_[pos_] == '"') {  // "" is a literal quote
        field.push_back('"');
        ++pos_;
        continue;
      }
      if (!at_record_end()) {
        return error(line_, str_cat("column ", column, ": unexpected character '", text_[pos_],
                                    "' after a closing quote (a quoted field must end at a delimiter or line end)"));
      }
      return absl::OkStatus();
    }
  }

  std::string_view text_;
  char delimiter_;
  std::string_view source_;
  size_t pos_ = 0;
  int64_t line_ = 1;
  int64_t record_line_ = 1;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool parse_int(std::string_view s, int64_t& out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

bool parse_double(std::string_view s, double& out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty() || s.front() == '+') return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec == std::errc::result_out_of_range && end == s.data() + s.size()) {
    out = std::strtod(std::string(s).c_str(), nullptr);  // "1e999" is inf and "1e-999" is 0, as strtod reads them
    return true;
  }
  return ec == std::errc() && end == s.data() + s.size();
}

bool parse_bool(std::string_view s, bool& out) {
  auto is = [&](std::string_view word) {
    if (s.size() != word.size()) return false;
    for (size_t i = 0; i < s.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(s[i])) != word[i]) return false;
    }
    return true;
  };
  if (is("true") || s == "1") return out = true, true;
  if (is("false") || s == "0") return out = false, true;
  return false;
}

// One selected column: its values as text and the line each came from.
struct Column {
  std::string name;
  size_t index;  // field position in a record
  std::vector<std::string> values;
};

struct Context {
  std::string_view source;
  const std::vector<int64_t>& lines;  // the line of each data record
};

absl::Status value_error(const Context& ctx, const Column& col, size_t row, std::string_view what) {
  return absl::InvalidArgumentError(
      str_cat(ctx.source, ":", ctx.lines[row], ": column ", col.index + 1, " (\"", col.name, "\"): ", what));
}

absl::StatusOr<DType> infer_dtype(const Context& ctx, const Column& col) {
  bool all_bool = true, all_int = true;
  bool any = false;
  for (size_t row = 0; row < col.values.size(); ++row) {
    std::string_view v = trim(col.values[row]);
    if (v.empty()) continue;
    any = true;
    bool b;
    int64_t i;
    double d;
    all_bool = all_bool && parse_bool(v, b) && v != "0" && v != "1";
    all_int = all_int && parse_int(v, i);
    if (!all_bool && !all_int && !parse_double(v, d)) {
      return value_error(ctx, col, row,
                         str_cat("\"", v,
                                 "\" is not a number (tensors hold numbers: give the column's "
                                 "dtype, or leave it out with select_columns)"));
    }
  }
  if (!any) return kF32;
  return all_bool ? kBool : all_int ? kI64 : kF32;
}

// Converts a column's text to a tensor of dtype; an error names the first value that does not fit.
absl::StatusOr<Tensor> convert_column(const Context& ctx, const Column& col, DType dtype,
                                      const std::optional<double>& missing) {
  Tensor out = empty({static_cast<int64_t>(col.values.size())}, dtype);
  absl::Status status;
  visit_all(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* data = static_cast<T*>(out.raw_data());
    for (size_t row = 0; row < col.values.size(); ++row) {
      std::string_view v = trim(col.values[row]);
      if (v.empty()) {
        if (!missing) {
          status = value_error(ctx, col, row, "empty value (set CsvOptions::missing_value to allow it)");
          return;
        }
        data[row] = convert<T>(*missing);
        continue;
      }
      if constexpr (std::is_same_v<T, bool>) {
        bool b;
        if (!parse_bool(v, b)) {
          status = value_error(ctx, col, row, str_cat("\"", v, "\" is not a bool (true/false/1/0)"));
          return;
        }
        data[row] = b;
      } else if constexpr (std::is_integral_v<T>) {
        int64_t i;
        if (!parse_int(v, i)) {
          status = value_error(ctx, col, row, str_cat("\"", v, "\" is not an integer (dtype ", dtype_name(dtype), ")"));
          return;
        }
        if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
            i > static_cast<int64_t>(std::numeric_limits<T>::max())) {
          status = value_error(ctx, col, row, str_cat(i, " is out of range for dtype ", dtype_name(dtype)));
          return;
        }
        data[row] = static_cast<T>(i);
      } else {
        double d;
        if (!parse_double(v, d)) {
          status = value_error(ctx, col, row, str_cat("\"", v, "\" is not a number (dtype ", dtype_name(dtype), ")"));
          return;
        }
        data[row] = convert<T>(d);
      }
    }
  });
  if (!status.ok()) return status;
  return out;
}

}  // namespace

absl::StatusOr<CsvColumns> parse_csv(std::string_view text, const CsvOptions& options, std::string_view source) {
  if (options.delimiter == '"' || options.delimiter == '\n' || options.delimiter == '\r') {
    return absl::InvalidArgumentError(str_cat(source, ": the delimiter cannot be a quote or a line break"));
  }
  Tokenizer tokens(text, options.delimiter, source);
  std::vector<std::string> fields;
  absl::StatusOr<bool> more = tokens.next(fields);
  if (!more.ok()) return more.status();
  if (!*more) return absl::InvalidArgumentError(str_cat(source, ": no records (the file is empty)"));

  std::vector<std::string> names;
  for (size_t i = 0; i < fields.size(); ++i) names.push_back(options.header ? fields[i] : str_cat("column_", i));
  const size_t width = names.size();

  std::vector<Column> columns;  // the selected ones, in output order
  if (options.select_columns.empty()) {
    for (size_t i = 0; i < width; ++i) columns.push_back({names[i], i, {}});
  }
  for (const std::string& want : options.select_columns) {
    size_t i = 0;
    while (i < width && names[i] != want) ++i;
    if (i == width) {
      return absl::InvalidArgumentError(
          str_cat(source, ": select_columns names \"", want, "\", which is not a column"));
    }
    columns.push_back({names[i], i, {}});
  }
  if (!options.dtypes.empty() && options.dtypes.size() != columns.size()) {
    return absl::InvalidArgumentError(
        str_cat(source, ": ", options.dtypes.size(), " dtypes given for ", columns.size(), " columns"));
  }

  std::vector<int64_t> lines;
  bool first_is_data = !options.header;
  while (true) {
    if (!first_is_data) {
      more = tokens.next(fields);
      if (!more.ok()) return more.status();
      if (!*more) break;
    }
    first_is_data = false;
    if (fields.size() != width) {
      return absl::InvalidArgumentError(str_cat(source, ":", tokens.record_line(), ": ", fields.size(),
                                                " fields, but the ",
                                                options.header ? "header has " : "first record has ", width));
    }
    lines.push_back(tokens.record_line());
    for (Column& col : columns) col.values.push_back(std::move(fields[col.index]));
  }

  Context ctx{source, lines};
  CsvColumns out;
  for (size_t c = 0; c < columns.size(); ++c) {
    DType dtype;
    if (!options.dtypes.empty()) {
      dtype = options.dtypes[c];
    } else {
      absl::StatusOr<DType> inferred = infer_dtype(ctx, columns[c]);
      if (!inferred.ok()) return inferred.status();
      dtype = *inferred;
    }
    absl::StatusOr<Tensor> t = convert_column(ctx, columns[c], dtype, options.missing_value);
    if (!t.ok()) return t.status();
    out.emplace_back(columns[c].name, std::move(*t));
    std::vector<std::string>().swap(columns[c].values);  // free the text as soon as the column is done
  }
  return out;
}

absl::StatusOr<CsvColumns> read_csv(const std::string& path, const CsvOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return internal::open_error(path, errno);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(str_cat(path, ": read failed (", std::strerror(errno), ")"));
  return parse_csv(text.str(), options, path);
}

}  // namespace gradflow
