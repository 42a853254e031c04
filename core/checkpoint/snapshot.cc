#include "core/checkpoint/snapshot.h"

#include <unistd.h>

#include <filesystem>
#include <thread>

#include "core/checkpoint/files.h"
#include "core/checkpoint/stream_copy.h"
#include "core/io/safetensors.h"
#include "core/tensor/error.h"
#include "core/tensor/storage.h"

namespace gradflow::checkpoint_files {
namespace {

namespace fs = std::filesystem;

void check(const std::error_code& ec, const std::string& path, const char* what) {
  if (ec) throw Error(str_cat(path, ": cannot ", what, ": ", ec.message()));
}

}  // namespace

void host_copy(Snapshot& snapshot) {
  // This copy is the part of an async save that blocks training: host sources are copied in 8 MiB pieces
  // on all ops threads, with non-temporal stores (stream_copy.h); device sources go one by one.
  struct Piece {
    char* to;
    const char* from;
    size_t bytes;
  };
  constexpr size_t kPiece = size_t{8} << 20;
  std::vector<Piece> pieces;
  std::vector<Tensor> sources;
  for (SnapshotFile& file : snapshot.files) {
    for (auto& [name, t] : file.tensors) {
      Tensor source = t.contiguous();
      Tensor copy = empty(source.shape(), source.dtype(), kCPU);
      size_t bytes = static_cast<size_t>(source.numel()) * dtype_size(source.dtype());
      if (source.device().is_cpu()) {
        for (size_t at = 0; at < bytes; at += kPiece) {
          pieces.push_back({static_cast<char*>(copy.raw_data()) + at, static_cast<const char*>(source.raw_data()) + at,
                            std::min(kPiece, bytes - at)});
        }
      } else {
        copy_bytes(copy.raw_data(), kCPU, source.raw_data(), source.device(), bytes);
      }
      sources.push_back(source);  // alive until the pieces are copied
      t = copy;
    }
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < static_cast<int64_t>(pieces.size()); ++i) {
    stream_copy(pieces[i].to, pieces[i].from, pieces[i].bytes);
  }
}

void fresh_directory(const std::string& tmp) {
  std::error_code ec;
  fs::remove_all(tmp, ec);
  check(ec, tmp, "remove a leftover temporary directory");
  fs::create_directories(tmp, ec);
  check(ec, tmp, "create the temporary directory");
}

nlohmann::json write_snapshot_files(const std::string& tmp, const Snapshot& snapshot) {
  nlohmann::json files = nlohmann::json::object();
  for (const SnapshotFile& file : snapshot.files) {
    std::string path = str_cat(tmp, "/", file.name);
    absl::StatusOr<SafetensorsEncoding> encoding =
        encode_safetensors(path, file.tensors, {{"step", std::to_string(snapshot.step)}});
    if (!encoding.ok()) throw Error(std::string(encoding.status().message()));
    // sha256 runs about as fast as the disk writes here: hash the same in-memory bytes on a second thread
    // while this one writes them, rather than reading the file back afterwards.
    std::string sha;
    uint64_t bytes = encoding->header.size();
    std::thread hasher([&] {
      Sha256 h;
      h.update(encoding->header.data(), encoding->header.size());
      for (const Tensor& t : encoding->tensors) {
        h.update(static_cast<const char*>(t.raw_data()), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));
      }
      sha = h.hex();
    });
    absl::Status s = write_encoded_safetensors(path, *encoding, {.fsync = true});
    hasher.join();
    if (!s.ok()) throw Error(std::string(s.message()));
    for (const Tensor& t : encoding->tensors) bytes += static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    files[file.name] = {{"bytes", bytes}, {"sha256", sha}};
  }
  return files;
}

std::string commit_directory(const std::string& dir, const std::string& tmp, int64_t step, const nlohmann::json& meta) {
  std::string final_dir = str_cat(dir, "/ckpt-", step);
  std::error_code ec;
  write_text(str_cat(tmp, "/meta.json"), meta.dump(2));
  fsync_path(tmp, true);
  if (fs::exists(final_dir)) fs::remove_all(final_dir, ec);  // the same step saved again
  check(ec, final_dir, "replace the checkpoint saved before at this step");
  fs::rename(tmp, final_dir, ec);
  check(ec, final_dir, str_cat("rename ", tmp, " to it").c_str());
  fsync_path(dir, true);
  write_text(str_cat(dir, "/latest.tmp"), str_cat("ckpt-", step, "\n"));
  fs::rename(str_cat(dir, "/latest.tmp"), str_cat(dir, "/latest"), ec);
  check(ec, str_cat(dir, "/latest"), "replace");
  fsync_path(dir, true);
  return final_dir;
}

std::string commit_snapshot(const std::string& dir, const Snapshot& snapshot) {
  std::string tmp = str_cat(dir, "/.ckpt-", snapshot.step, ".tmp-", ::getpid());
  fresh_directory(tmp);
  nlohmann::json meta = snapshot.meta;
  meta["files"] = write_snapshot_files(tmp, snapshot);
  if (snapshot.before_commit) snapshot.before_commit(snapshot.step);
  return commit_directory(dir, tmp, snapshot.step, meta);
}

}  // namespace gradflow::checkpoint_files
