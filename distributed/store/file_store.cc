#include "distributed/store/file_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "core/tensor/error.h"

namespace gradflow::distributed {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMaxFileName = 240;

absl::Status io_error(const std::string& what, const std::string& path) {
  return absl::UnavailableError(str_cat("FileStore: ", what, " ", path, ": ", std::strerror(errno)));
}

// Holds the directory's lock file flock()ed for as long as it lives. flock() locks belong to the open
// file, so two threads of one process exclude each other as two processes do.
class DirLock {
 public:
  explicit DirLock(const std::string& dir) : path_(dir + "/.lock") {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return;
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) {
        ::close(fd_);
        fd_ = -1;
        return;
      }
    }
  }
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);  // closing drops the lock
  }
  absl::Status status() const { return fd_ >= 0 ? absl::OkStatus() : io_error("cannot lock", path_); }

 private:
  std::string path_;
  int fd_ = -1;
};

// Polls done() until it returns true or not OK, or the timeout passes (then returns false).
template <typename Done>
absl::StatusOr<bool> poll_until(Done done, Store::Timeout timeout, Store::Timeout interval) {
  Clock::time_point deadline = Clock::now() + timeout;
  std::chrono::milliseconds pause(1);
  while (true) {
    absl::StatusOr<bool> finished = done();
    if (!finished.ok() || *finished) return finished;
    Clock::time_point now = Clock::now();
    if (now >= deadline) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>({pause, interval, deadline - now}));
    pause *= 2;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileStore>> FileStore::create(const FileStoreOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec || ::access(options.path.c_str(), W_OK) != 0) {
    return absl::UnavailableError(str_cat("FileStore: cannot use directory ", options.path, ": ",
                                          ec ? ec.message() : std::strerror(errno)));
  }
  return std::unique_ptr<FileStore>(new FileStore(options));
}

absl::StatusOr<std::string> FileStore::key_path(const std::string& key) const {
  // Letters, digits, '-' and '_' stand for themselves; every other byte becomes %XX, so no key names a
  // temporary file (those start with '.') or leaves the directory.
  static const char kHex[] = "0123456789ABCDEF";
  std::string name = "k";
  for (unsigned char c : key) {
    if (std::isalnum(c) || c == '-' || c == '_') {
      name.push_back(static_cast<char>(c));
    } else {
      name += {'%', kHex[c >> 4], kHex[c & 15]};
    }
  }
  if (name.size() > kMaxFileName) {
    return absl::InvalidArgumentError(
        str_cat("FileStore: key \"", key.substr(0, 64), "...\" is too long for a file name"));
  }
  return str_cat(options_.path, "/", name);
}

absl::StatusOr<std::string> FileStore::read_key(const std::string& key, bool* present) const {
  absl::StatusOr<std::string> path = key_path(key);
  if (!path.ok()) return path.status();
  int fd = ::open(path->c_str(), O_RDONLY | O_CLOEXEC);
  *present = fd >= 0;
  if (fd < 0) return errno == ENOENT ? absl::StatusOr<std::string>("") : io_error("cannot open", *path);
  std::string value;
  char buf[64 * 1024];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status error = io_error("cannot read", *path);
      ::close(fd);
      return error;
    }
    if (n == 0) break;
    value.append(buf, n);
  }
  ::close(fd);
  return value;
}

absl::Status FileStore::write_key(const std::string& key, const std::string& value) const {
  absl::StatusOr<std::string> path = key_path(key);
  if (!path.ok()) return path.status();
  // Host, process and a counter: unique among every writer of a shared directory.
  static std::atomic<uint64_t> counter{0};
  char host[256] = "host";
  ::gethostname(host, sizeof(host) - 1);
  std::string tmp = str_cat(options_.path, "/.tmp.", host, ".", ::getpid(), ".", counter.fetch_add(1));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("cannot create", tmp);
  size_t done = 0;
  while (done < value.size()) {
    ssize_t n = ::write(fd, value.data() + done, value.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status error = io_error("cannot write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return error;
    }
    done += n;
  }
  if (::close(fd) != 0 || ::rename(tmp.c_str(), path->c_str()) != 0) {
    absl::Status error = io_error("cannot write", *path);
    ::unlink(tmp.c_str());
    return error;
  }
  return absl::OkStatus();
}

absl::Status FileStore::set(const std::string& key, const std::string& value) {
  DirLock lock(options_.path);
  if (!lock.status().ok()) return lock.status();
  return write_key(key, value);
}

absl::StatusOr<std::string> FileStore::get(const std::string& key, Timeout timeout) {
  std::string value;
  absl::StatusOr<bool> found = poll_until(
      [&]() -> absl::StatusOr<bool> {
        bool present = false;
        absl::StatusOr<std::string> read = read_key(key, &present);
        if (!read.ok()) return read.status();
        value = std::move(*read);
        return present;
      },
      timeout, options_.poll_interval);
  if (!found.ok()) return found.status();
  if (!*found) return store_internal::timeout_error("get", {key}, timeout);
  return value;
}

absl::StatusOr<int64_t> FileStore::add(const std::string& key, int64_t delta) {
  DirLock lock(options_.path);
  if (!lock.status().ok()) return lock.status();
  bool present = false;
  absl::StatusOr<std::string> current = read_key(key, &present);
  if (!current.ok()) return current.status();
  int64_t value = 0;
  if (present) {
    absl::StatusOr<int64_t> parsed = store_internal::parse_counter(key, *current);
    if (!parsed.ok()) return parsed.status();
    value = *parsed;
  }
  value += delta;
  absl::Status written = write_key(key, std::to_string(value));
  if (!written.ok()) return written;
  return value;
}

absl::Status FileStore::wait(const std::vector<std::string>& keys, Timeout timeout) {
  absl::StatusOr<bool> found = poll_until([&] { return check(keys); }, timeout, options_.poll_interval);
  if (!found.ok()) return found.status();
  return *found ? absl::OkStatus() : store_internal::timeout_error("wait", keys, timeout);
}

absl::StatusOr<std::string> FileStore::compare_set(const std::string& key, const std::string& expected,
                                                   const std::string& desired) {
  DirLock lock(options_.path);
  if (!lock.status().ok()) return lock.status();
  bool present = false;
  absl::StatusOr<std::string> current = read_key(key, &present);
  if (!current.ok()) return current.status();
  if (!store_internal::compare_set_applies(present, *current, expected)) return present ? *current : expected;
  absl::Status written = write_key(key, desired);
  if (!written.ok()) return written;
  return desired;
}

absl::StatusOr<bool> FileStore::check(const std::vector<std::string>& keys) {
  for (const std::string& key : keys) {
    absl::StatusOr<std::string> path = key_path(key);
    if (!path.ok()) return path.status();
    if (::access(path->c_str(), F_OK) != 0) {
      if (errno == ENOENT) return false;
      return io_error("cannot stat", *path);
    }
  }
  return true;
}

absl::StatusOr<bool> FileStore::delete_key(const std::string& key) {
  absl::StatusOr<std::string> path = key_path(key);
  if (!path.ok()) return path.status();
  DirLock lock(options_.path);
  if (!lock.status().ok()) return lock.status();
  if (::unlink(path->c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  return io_error("cannot remove", *path);
}

}  // namespace gradflow::distributed
