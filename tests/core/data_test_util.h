// Helpers shared by the core/data tests: elements as comparable text, whole passes as vectors.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/data/dataset.h"
#include "core/ops/ops.h"

namespace gradflow::testing {

// "i64[]{3}|f32[2]{1,2}": dtype, shape and values of every component, to compare elements exactly.
inline std::string key(const Element& e) {
  std::string out;
  for (size_t i = 0; i < e.size(); ++i) {
    if (i > 0) out += "|";
    out += str_cat(dtype_name(e[i].dtype()), shape_str(e[i].shape()), "{");
    std::vector<double> v = e[i].to_vector<double>();
    for (size_t j = 0; j < v.size(); ++j) out += str_cat(j ? "," : "", v[j]);
    out += "}";
  }
  return out;
}

// The rest of the iterator's pass (at most `limit` elements when limit >= 0), as keys.
inline std::vector<std::string> drain(Iterator& it, int64_t limit = -1) {
  std::vector<std::string> out;
  while (limit < 0 || static_cast<int64_t>(out.size()) < limit) {
    std::optional<Element> e = it.next();
    if (!e) break;
    out.push_back(key(*e));
  }
  return out;
}

inline std::vector<std::string> keys(const Dataset& ds, int64_t limit = -1) {
  Iterator it = ds.make_iterator();
  return drain(it, limit);
}

// The first component of every element, as integers (for scalar and 1-D integer datasets).
inline std::vector<int64_t> ints(const Dataset& ds, int64_t limit = -1) {
  std::vector<int64_t> out;
  Iterator it = ds.make_iterator();
  while (limit < 0 || static_cast<int64_t>(out.size()) < limit) {
    std::optional<Element> e = it.next();
    if (!e) break;
    for (int64_t v : (*e)[0].to_vector<int64_t>()) out.push_back(v);
  }
  return out;
}

inline std::vector<int64_t> iota(int64_t start, int64_t stop, int64_t step = 1) {
  std::vector<int64_t> out;
  for (int64_t v = start; step > 0 ? v < stop : v > stop; v += step) out.push_back(v);
  return out;
}

inline Element times(Element e, double factor) {
  for (Tensor& t : e) t = t * factor;
  return e;
}

// Expects `call` to throw E with a message containing every one of `parts`.
template <typename E, typename F>
void expect_error(F&& call, const std::vector<std::string>& parts) {
  try {
    call();
    ADD_FAILURE() << "no exception; expected one mentioning " << parts[0];
  } catch (const E& e) {
    std::string what = e.what();
    for (const std::string& p : parts) EXPECT_NE(what.find(p), std::string::npos) << "'" << p << "' not in: " << what;
  }
}

// A fresh directory for one test, removed when it ends.
class TempDir {
 public:
  TempDir() {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            str_cat("gradflow_data_", info->test_suite_name(), "_", info->name(), "_", getpid());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  // Names of the files in the directory.
  std::vector<std::string> list() const {
    std::vector<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(path_)) out.push_back(entry.path().filename());
    return out;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace gradflow::testing
