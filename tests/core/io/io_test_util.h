// Helpers shared by the core/io tests: a scratch directory removed at the end, whole-file reads/writes,
// and a matcher-like check that a Status has a code and contains every piece of expected text.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>

#include "absl/status/status.h"

namespace gradflow::testing_io {

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) {
    path_ = std::filesystem::temp_directory_path() / ("gradflow_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// EXPECT_TRUE(has_error(status, absl::StatusCode::kDataLoss, {"file.tfrecord", "byte offset 40"}))
inline ::testing::AssertionResult has_error(const absl::Status& status, absl::StatusCode code,
                                            std::initializer_list<std::string> pieces) {
  if (status.code() != code) {
    return ::testing::AssertionFailure() << "expected code " << absl::StatusCodeToString(code) << ", got "
                                         << status.ToString();
  }
  std::string message(status.message());
  for (const std::string& piece : pieces) {
    if (message.find(piece) == std::string::npos) {
      return ::testing::AssertionFailure() << "message \"" << message << "\" lacks \"" << piece << "\"";
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace gradflow::testing_io
