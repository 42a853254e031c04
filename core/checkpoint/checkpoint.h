// Checkpoints of a model and its optimizer, as DESIGN.md lays them out:
//   <dir>/ckpt-<step>/meta.json              format, step, epoch, RNG state, optimizer, per-file bytes + sha256
//   <dir>/ckpt-<step>/model.safetensors      the model's variables by Keras-style name ("dense_1/kernel")
//   <dir>/ckpt-<step>/optimizer.safetensors  "iteration" and the slots ("dense_1/kernel/adam_m")
//   <dir>/latest                             names the newest complete checkpoint
//
//   CheckpointManager ckpt("/shared/run1", model, {.max_to_keep = 3});
//   if (auto restored = ckpt.restore_latest()) start_step = restored->step;   // resume
//   ...
//   ckpt.save(step, epoch);
//
// A save is atomic: everything is written (and fsynced) into a temporary directory that is renamed into
// place, and only then is `latest` replaced (write + rename), so a crash at any moment leaves the previous
// checkpoint usable. A restore checks every file's size and sha256, the names, shapes and dtypes against
// the model, before changing anything; restore_latest() falls back to the previous checkpoint when the
// newest is damaged, saying which file and what is wrong.
//
// BackupAndRestore (core/nn/callbacks.h) does this for fit(): resume at the epoch where a job stopped.
// Not yet (docs/checkpoints.md): several ranks writing shards, async saves, resharding.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/nn/model.h"
#include "core/tensor/random.h"

namespace gradflow {

struct CheckpointOptions {
  int max_to_keep = 5;  // older complete checkpoints are deleted after a save (0: keep all)
};

struct CheckpointInfo {
  std::string path;  // <dir>/ckpt-<step>
  int64_t step = 0;
  int64_t epoch = 0;
  std::map<std::string, std::string> extra;  // what save() was given
};

class CheckpointManager {
 public:
  // dir is created when missing. The model must be compiled for the optimizer to be saved too.
  CheckpointManager(std::string dir, Model& model, CheckpointOptions options = {})
      : CheckpointManager(std::move(dir), model.impl(), options) {}
  CheckpointManager(std::string dir, ModelImpl& model, CheckpointOptions options = {});

  // Saves the model (built: it must have variables), the optimizer (when compiled) and the global RNG state
  // as checkpoint `step`; returns its path. Error (with the path) when anything cannot be written.
  std::string save(int64_t step, int64_t epoch = 0, const std::map<std::string, std::string>& extra = {});

  // Restores the checkpoint at path (model variables, optimizer slots and iterations, RNG state). The
  // model must be built with the same variables. Error naming the file and problem when it is damaged or
  // does not match; nothing is changed then.
  CheckpointInfo restore(const std::string& path);

  // The newest usable checkpoint (`latest` first, then by descending step), restored; nullopt when there
  // is none. Damaged ones are reported on stderr and skipped.
  std::optional<CheckpointInfo> restore_latest();

  // The complete checkpoints in dir (those with a meta.json), by ascending step.
  std::vector<std::string> checkpoints() const;

  // Data-parallel jobs: every replica's generator state (by replica id), saved by the next save() beside
  // this process's; a restore under a ReplicaContext then gives each replica its own back.
  void set_replica_rng_states(std::vector<GeneratorState> states) { replica_rng_ = std::move(states); }

 private:
  std::string dir_;
  ModelImpl& model_;
  CheckpointOptions options_;
  std::vector<GeneratorState> replica_rng_;
};

// The sha256 of a file's bytes, as lowercase hex.
std::string sha256_file(const std::string& path);

}  // namespace gradflow
