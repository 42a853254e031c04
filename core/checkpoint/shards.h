// How a checkpoint's variables are split into files, and put back together (private to core/checkpoint).
//
// A single process writes model.safetensors and optimizer.safetensors. Under a ReplicaContext with N > 1
// replicas rank r writes model-<r>-of-<N>.safetensors and optimizer-<r>-of-<N>.safetensors, each holding
// the variables assign_shards() gives to r. A restore reads every file of a kind and merges them, so any
// number of ranks (or one process) restores a checkpoint written by any other number.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/checkpoint/snapshot.h"
#include "core/io/safetensors.h"
#include "core/tensor/random.h"
#include "nlohmann/json.hpp"

namespace gradflow::checkpoint_files {

// "model-1-of-4.safetensors" for kind "model".
std::string shard_file_name(const std::string& kind, int rank, int n);

// The rank that writes each tensor, balancing bytes: largest first (ties: earlier first), each to the
// rank with the fewest bytes so far (ties: the lower rank). Every rank computes the same from the same
// list, so no exchange is needed.
std::vector<int> assign_shards(const std::vector<std::pair<std::string, Tensor>>& tensors, int n);

// Turns a whole-model snapshot ("model.safetensors", ...) into rank's part of it ("model-<rank>-of-<n>...").
void keep_shard(Snapshot& snapshot, int rank, int n);

// Every tensor of one kind ("model", "optimizer") across the checkpoint's files (kind.safetensors, or
// all of kind-<r>-of-<n>.safetensors), with the file each came from for error messages.
struct MergedFiles {
  std::string label;  // "<path>/model.safetensors" or "<path>/model-*-of-4.safetensors"
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> origin;  // variable name -> file path
  bool empty() const { return label.empty(); }
};
// ValueError naming both files when a variable is in two of them; an empty result when none is of kind.
MergedFiles merge_files(const std::string& path, const std::map<std::string, SafetensorsFile>& contents,
                        const std::string& kind);

// The generator state replica `replica` resumes with, from meta.json: "rng_replicas"[replica] when the
// checkpoint has that many replicas (a checkpoint without rng_replicas counts as one, holding "rng");
// otherwise replica (replica mod n)'s state with its seed mixed with the replica id (splitmix64), so that
// replicas beyond the saved ones draw streams of their own, the same on every resume. nullopt when
// meta.json holds no generator state.
std::optional<GeneratorState> replica_generator_state(const nlohmann::json& meta, int replica);

}  // namespace gradflow::checkpoint_files
