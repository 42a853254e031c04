// What one save writes, taken apart from writing it (private to core/checkpoint): save() takes a
// Snapshot on the caller's thread; commit_snapshot() writes it, on that thread (a synchronous save) or on
// a background one (an async save, after host_copy() detached it from the live variables). Both paths
// write the same bytes.
#pragma once

#include <cstdint>
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
};

// Replaces every tensor by a copy in fresh host memory, so that training may change (or free) the
// variables while the snapshot is written.
void host_copy(Snapshot& snapshot);

// Writes the snapshot as <dir>/ckpt-<step>: files into a temporary directory (sha256 computed from the
// bytes as they are written), meta.json, fsyncs, the rename into place, then `latest`. Returns the path.
// Error naming the path when anything cannot be written.
std::string commit_snapshot(const std::string& dir, const Snapshot& snapshot);

}  // namespace gradflow::checkpoint_files
