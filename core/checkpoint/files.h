// File helpers the checkpoint code shares (private to core/checkpoint): durable small writes, reads,
// directory syncs and incremental sha256. Every error names the path.
#pragma once

#include <string>

#include "nlohmann/json.hpp"

namespace gradflow::checkpoint_files {

// fsync of a file or a directory (a rename is durable only once its directory is synced).
void fsync_path(const std::string& path, bool directory);

// Writes text to path and fsyncs it.
void write_text(const std::string& path, const std::string& text);

std::string read_text(const std::string& path);

// <path>/meta.json parsed; a discarded value (is_discarded()) when it is missing or not JSON.
nlohmann::json read_meta(const std::string& checkpoint_path);

// sha256 fed piece by piece (the bytes of a file as they are written), as lowercase hex at the end.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const char* data, size_t size);
  std::string hex();  // once, at the end

 private:
  void* ctx_;  // EVP_MD_CTX, kept out of this header
};

}  // namespace gradflow::checkpoint_files
