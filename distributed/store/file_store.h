// FileStore: a Store in a directory that every rank can reach (a shared file system, or /tmp for ranks on
// one machine). Each key is one file; writes go to a temporary file renamed into place, so readers never
// see half a value. Read-modify-write calls (add, compare_set) hold an exclusive flock() on the
// directory's ".lock" file. Waiting calls poll the directory.
//
//   absl::StatusOr<std::unique_ptr<FileStore>> store = FileStore::create({.path = "/shared/job42/store"});
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "distributed/store/store.h"

namespace gradflow::distributed {

struct FileStoreOptions {
  std::string path;                                 // the directory; created when missing
  Store::Timeout timeout = Store::kDefaultTimeout;  // get() and wait() default
  Store::Timeout poll_interval = std::chrono::milliseconds(10);  // longest pause between looks
};

class FileStore : public Store {
 public:
  // Creates the directory when missing. kUnavailable when it cannot be created or written.
  static absl::StatusOr<std::unique_ptr<FileStore>> create(const FileStoreOptions& options);

  // Keys may hold any bytes; kInvalidArgument for a key whose file name would pass 240 bytes.
  absl::Status set(const std::string& key, const std::string& value) override;
  using Store::get;
  absl::StatusOr<std::string> get(const std::string& key, Timeout timeout) override;
  absl::StatusOr<int64_t> add(const std::string& key, int64_t delta) override;
  using Store::wait;
  absl::Status wait(const std::vector<std::string>& keys, Timeout timeout) override;
  absl::StatusOr<std::string> compare_set(const std::string& key, const std::string& expected,
                                          const std::string& desired) override;
  absl::StatusOr<bool> check(const std::vector<std::string>& keys) override;
  absl::StatusOr<bool> delete_key(const std::string& key) override;

 private:
  explicit FileStore(const FileStoreOptions& options) : Store(options.timeout), options_(options) {}
  // The file that holds key.
  absl::StatusOr<std::string> key_path(const std::string& key) const;
  // Reads key's file; false in *present when there is none.
  absl::StatusOr<std::string> read_key(const std::string& key, bool* present) const;
  absl::Status write_key(const std::string& key, const std::string& value) const;

  FileStoreOptions options_;
};

}  // namespace gradflow::distributed
