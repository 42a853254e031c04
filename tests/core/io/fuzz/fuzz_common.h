// Shared by the core/io fuzz targets: a scratch file for parsers that read paths, and GF_FUZZ_CHECK, which
// aborts (a crash the fuzzer reports, with the input saved) when a property of the parser fails.
#pragma once

#include <google/protobuf/stubs/logging.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#define GF_FUZZ_CHECK(cond, ...)                                                              \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "GF_FUZZ_CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, "  " __VA_ARGS__);                                              \
      std::fprintf(stderr, "\n");                                                          \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)

namespace gradflow::fuzz {

// A per-process scratch file under /dev/shm when it exists (no disk traffic), else the temp directory;
// removed at exit.
class ScratchFile {
 public:
  explicit ScratchFile(const std::string& stem) {
    std::filesystem::path dir = std::filesystem::exists("/dev/shm") ? std::filesystem::path("/dev/shm")
                                                                    : std::filesystem::temp_directory_path();
    path_ = (dir / ("gradflow_fuzz_" + stem + "_" + std::to_string(::getpid()))).string();
  }
  ~ScratchFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }
  void write(const uint8_t* data, size_t size) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }

 private:
  std::string path_;
};

// Protobuf logs every rejected string field to stderr; millions of runs would drown the real report.
inline void silence_protobuf_logs() {
  static const bool done = [] {
    google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char*, int, const std::string&) {});
    return true;
  }();
  (void)done;
}

}  // namespace gradflow::fuzz
