#include "launcher/output.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

namespace gradflow::launcher {

bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

OutputRelay::OutputRelay(bool tag, std::optional<std::string> output_dir)
    : tag_(tag), output_dir_(std::move(output_dir)) {}

OutputRelay::~OutputRelay() {
  for (auto& [key, fd] : files_) {
    if (fd >= 0) ::close(fd);
  }
}

std::string OutputRelay::prefix(int rank, Stream stream) const {
  if (!tag_) return "";
  return "[1," + std::to_string(rank) + "]" + (stream == Stream::kStdout ? "<stdout>:" : "<stderr>:");
}

int OutputRelay::file_for(int rank, Stream stream) {
  auto key = std::make_pair(rank, stream);
  if (auto it = files_.find(key); it != files_.end()) return it->second;
  std::filesystem::path dir = std::filesystem::path(*output_dir_) / "1" / ("rank." + std::to_string(rank));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::string path = (dir / (stream == Stream::kStdout ? "stdout" : "stderr")).string();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  files_[key] = fd;
  return fd;
}

void OutputRelay::emit(int rank, Stream stream, const std::string& line, bool raw) {
  std::string out = raw ? line : prefix(rank, stream) + line;
  write_all(static_cast<int>(stream), out.data(), out.size());
  if (output_dir_ && !raw) {
    int fd = file_for(rank, stream);
    if (fd >= 0) write_all(fd, line.data(), line.size());
  }
}

void OutputRelay::write(int rank, Stream stream, const char* data, size_t size, bool raw) {
  std::string& pending = pending_[{rank, stream, raw}];
  pending.append(data, size);
  size_t start = 0;
  for (size_t nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n', start)) {
    emit(rank, stream, pending.substr(start, nl + 1 - start), raw);
    start = nl + 1;
  }
  pending.erase(0, start);
}

void OutputRelay::close(int rank, Stream stream, bool raw) {
  auto it = pending_.find({rank, stream, raw});
  if (it == pending_.end() || it->second.empty()) return;
  emit(rank, stream, it->second + "\n", raw);
  it->second.clear();
}

}  // namespace gradflow::launcher
