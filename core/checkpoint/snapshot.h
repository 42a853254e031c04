// What one save writes, taken apart from writing it (private to core/checkpoint): save() takes a
// Snapshot on the caller's thread; commit_snapshot() writes it, on that thread (a synchronous save) or on
// a background one (an async save, after host_copy() detached it from the live variables). Both paths
// write the same bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/tensor.h"
#include "nlohmann/json.hpp"

namespace gradflow::checkpoint_files {

struct SnapshotFile {
  std::string name;                                     // "model.safetensors"
  std::vector<std::pair<std::string, Tensor>> tensors;  // by variable name
};

struct Snapshot {
  int64_t step = 0;
  nlohmann::json meta;  // everything but "files", which commit_snapshot adds (bytes and sha256)
  std::vector<SnapshotFile> files;
  // CheckpointOptions::before_commit: runs once the files are written, before meta.json and the rename.
  std::function<void(int64_t step)> before_commit;
};

// Replaces every tensor by a copy in fresh host memory, so that training may change (or free) the
// variables while the snapshot is written.
void host_copy(Snapshot& snapshot);

// The steps of a commit, which a sharded save (sharded_save.h) spreads over ranks:
// an empty temporary directory (a leftover of a crashed save removed first);
void fresh_directory(const std::string& tmp);
// the snapshot's files written into it, fsynced, each hashed as it is written; meta.json's "files"
// entries for them ({name: {bytes, sha256}});
nlohmann::json write_snapshot_files(const std::string& tmp, const Snapshot& snapshot);
// meta.json written into it, fsyncs, the rename to <dir>/ckpt-<step>, then `latest`. Returns the path.
std::string commit_directory(const std::string& dir, const std::string& tmp, int64_t step, const nlohmann::json& meta);

// Writes the snapshot as <dir>/ckpt-<step>: files into a temporary directory (sha256 computed from the
// bytes as they are written), meta.json, fsyncs, the rename into place, then `latest`. Returns the path.
// Error naming the path when anything cannot be written.
std::string commit_snapshot(const std::string& dir, const Snapshot& snapshot);

}  // namespace gradflow::checkpoint_files
