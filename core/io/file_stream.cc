#include "core/io/file_stream.h"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/tensor/error.h"

namespace gradflow::internal {
namespace {

constexpr unsigned kGzipBufferBytes = 1 << 17;

absl::Status closed_error(const std::string& path) {
  return absl::FailedPreconditionError(str_cat(path, ": the file is already closed"));
}

// zlib's last error, without the "<path>: " that gzerror puts before it.
std::string gz_message(gzFile f, const std::string& path) {
  int code = 0;
  const char* msg = gzerror(f, &code);
  if (code == Z_ERRNO) return std::strerror(errno);
  std::string text = msg != nullptr ? msg : "unknown zlib error";
  if (text.rfind(path + ": ", 0) == 0) text.erase(0, path.size() + 2);
  return text;
}

class PlainSink : public ByteSink {
 public:
  PlainSink(std::string path, FILE* f) : path_(std::move(path)), f_(f) {}
  ~PlainSink() override { close().IgnoreError(); }
  absl::Status write(const void* data, size_t size) override {
    if (f_ == nullptr) return closed_error(path_);
    if (std::fwrite(data, 1, size, f_) != size)
      return absl::InternalError(str_cat(path_, ": write failed (", std::strerror(errno), ")"));
    return absl::OkStatus();
  }
  absl::Status flush() override {
    if (f_ == nullptr) return closed_error(path_);
    if (std::fflush(f_) != 0) return absl::InternalError(str_cat(path_, ": flush failed (", std::strerror(errno), ")"));
    return absl::OkStatus();
  }
  absl::Status close() override {
    if (f_ == nullptr) return absl::OkStatus();
    int rc = std::fclose(f_);
    f_ = nullptr;
    if (rc != 0) return absl::InternalError(str_cat(path_, ": close failed (", std::strerror(errno), ")"));
    return absl::OkStatus();
  }

 private:
  std::string path_;
  FILE* f_;
};

class GzipSink : public ByteSink {
 public:
  GzipSink(std::string path, gzFile f) : path_(std::move(path)), f_(f) {}
  ~GzipSink() override { close().IgnoreError(); }
  absl::Status write(const void* data, size_t size) override {
    if (f_ == nullptr) return closed_error(path_);
    const char* p = static_cast<const char*>(data);
    while (size > 0) {  // gzwrite takes an unsigned length
      unsigned chunk = static_cast<unsigned>(std::min<size_t>(size, 1u << 30));
      if (gzwrite(f_, p, chunk) != static_cast<int>(chunk)) {
        return absl::InternalError(str_cat(path_, ": write failed (", gz_message(f_, path_), ")"));
      }
      p += chunk;
      size -= chunk;
    }
    return absl::OkStatus();
  }
  absl::Status flush() override {
    if (f_ == nullptr) return closed_error(path_);
    if (gzflush(f_, Z_SYNC_FLUSH) != Z_OK)
      return absl::InternalError(str_cat(path_, ": flush failed (", gz_message(f_, path_), ")"));
    return absl::OkStatus();
  }
  absl::Status close() override {
    if (f_ == nullptr) return absl::OkStatus();
    int rc = gzclose(f_);
    f_ = nullptr;
    if (rc != Z_OK) return absl::InternalError(str_cat(path_, ": close failed (zlib error ", rc, ")"));
    return absl::OkStatus();
  }

 private:
  std::string path_;
  gzFile f_;
};

class PlainSource : public ByteSource {
 public:
  PlainSource(std::string path, FILE* f) : path_(std::move(path)), f_(f) {}
  ~PlainSource() override { std::fclose(f_); }
  absl::StatusOr<size_t> read(void* data, size_t size) override {
    size_t n = std::fread(data, 1, size, f_);
    if (n < size && std::ferror(f_)) return absl::DataLossError(str_cat("read failed (", std::strerror(errno), ")"));
    return n;
  }
  absl::Status seek(uint64_t offset) override {
    if (offset > static_cast<uint64_t>(std::numeric_limits<off_t>::max()) ||
        fseeko(f_, static_cast<off_t>(offset), SEEK_SET) != 0) {
      return absl::InvalidArgumentError(str_cat(path_, ": cannot seek to byte offset ", offset));
    }
    std::clearerr(f_);
    return absl::OkStatus();
  }

 private:
  std::string path_;
  FILE* f_;
};

class GzipSource : public ByteSource {
 public:
  GzipSource(std::string path, gzFile f) : path_(std::move(path)), f_(f) {}
  ~GzipSource() override { gzclose(f_); }
  absl::StatusOr<size_t> read(void* data, size_t size) override {
    char* p = static_cast<char*>(data);
    size_t total = 0;
    while (total < size) {
      unsigned chunk = static_cast<unsigned>(std::min<size_t>(size - total, 1u << 30));
      int n = gzread(f_, p + total, chunk);
      if (n < 0) return corrupt();
      if (n == 0) break;
      total += static_cast<size_t>(n);
    }
    int code = 0;
    gzerror(f_, &code);
    if (total < size && code != Z_OK) return corrupt();  // a cut-off stream: zlib returns what it had, then flags it
    return total;
  }
  absl::Status seek(uint64_t offset) override {
    if (failed_) {  // zlib's state after a stream error is not reliable: start again from a fresh handle
      gzFile fresh = gzopen(path_.c_str(), "rb");
      if (fresh == nullptr) return open_error(path_, errno != 0 ? errno : ENOMEM);
      gzclose(f_);
      f_ = fresh;
      gzbuffer(f_, kGzipBufferBytes);
      failed_ = false;
    }
    gzclearerr(f_);
    if (offset > static_cast<uint64_t>(std::numeric_limits<z_off_t>::max()) ||
        gzseek(f_, static_cast<z_off_t>(offset), SEEK_SET) < 0) {
      failed_ = true;
      return absl::DataLossError(
          str_cat(path_, ": cannot seek to byte offset ", offset, " (", gz_message(f_, path_), ")"));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status corrupt() {
    failed_ = true;
    return absl::DataLossError(str_cat("corrupt gzip stream (", gz_message(f_, path_), ")"));
  }

  std::string path_;
  gzFile f_;
  bool failed_ = false;
};

}  // namespace

absl::Status open_error(const std::string& path, int err) {
  std::string message = str_cat(path, ": cannot open (", std::strerror(err), ")");
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<std::unique_ptr<ByteSink>> ByteSink::open(const std::string& path, Compression compression,
                                                         int gzip_level) {
  if (compression == Compression::kGzip) {
    if (gzip_level < 1 || gzip_level > 9) {
      return absl::InvalidArgumentError(str_cat(path, ": gzip level ", gzip_level, " is not in [1, 9]"));
    }
    errno = 0;
    gzFile f = gzopen(path.c_str(), str_cat("wb", gzip_level).c_str());
    if (f == nullptr) return open_error(path, errno != 0 ? errno : ENOMEM);
    gzbuffer(f, kGzipBufferBytes);
    return std::unique_ptr<ByteSink>(new GzipSink(path, f));
  }
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return open_error(path, errno);
  return std::unique_ptr<ByteSink>(new PlainSink(path, f));
}

absl::StatusOr<std::unique_ptr<ByteSource>> ByteSource::open(const std::string& path, Compression compression) {
  if (compression == Compression::kGzip) {
    errno = 0;
    gzFile f = gzopen(path.c_str(), "rb");
    if (f == nullptr) return open_error(path, errno != 0 ? errno : ENOMEM);
    gzbuffer(f, kGzipBufferBytes);
    // zlib would pass a plain file through unchanged; a reader asked for GZIP must not silently accept one.
    char probe;
    if (gzdirect(f) == 1 && gzread(f, &probe, 1) == 1) {
      gzclose(f);
      return absl::DataLossError(str_cat(path, ": not a gzip file (compression was set to GZIP)"));
    }
    gzrewind(f);
    return std::unique_ptr<ByteSource>(new GzipSource(path, f));
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return open_error(path, errno);
  return std::unique_ptr<ByteSource>(new PlainSource(path, f));
}

}  // namespace gradflow::internal
