// Checkpoints of a model and its optimizer, as DESIGN.md lays them out:
//   <dir>/ckpt-<step>/meta.json              format, step, epoch, save time, RNG state, optimizer, per-file bytes + sha256
//   <dir>/ckpt-<step>/model.safetensors      the model's variables by Keras-style name ("dense_1/kernel")
//   <dir>/ckpt-<step>/optimizer.safetensors  "iteration" and the slots ("dense_1/kernel/adam_m")
//   <dir>/latest                             names the newest complete checkpoint
// Under a ReplicaContext with N > 1 replicas, save() is collective and sharded: rank r writes
// model-<r>-of-<N>.safetensors and optimizer-<r>-of-<N>.safetensors (a balanced part of the variables),
// rank 0 writes meta.json and commits once every rank has succeeded (sharded_commit.h).
//
//   CheckpointManager ckpt("/shared/run1", model, {.max_to_keep = 3, .save_every_n_steps = 1000, .async = true});
//   if (auto restored = ckpt.restore_latest()) start_step = restored->step;   // resume
//   ...
//   ckpt.maybe_save(step, epoch);   // every 1000 steps; training goes on while it is written
//
// A save is atomic: everything is written (and fsynced) into a temporary directory that is renamed into
// place, and only then is `latest` replaced (write + rename), so a crash at any moment leaves the previous
// checkpoint usable. A restore checks every file's size and sha256, the names, shapes and dtypes against
// the model, before changing anything; restore_latest() falls back to the previous checkpoint when the
// newest is damaged, saying which file and what is wrong. Any number of ranks restores a checkpoint
// written by any other number (every rank reads all the shards: data-parallel replicas hold everything).
//
// With async, save() copies the state to host memory and returns; a background thread writes, hashes,
// fsyncs and commits it (the same bytes as a synchronous save). The next save(), restore() or wait()
// waits for it and throws its error if it failed. Checkpoints that pruning drops are renamed out of the
// listing at once and deleted in the background (deleting 400 MB took ~0.1 s on the test VM). An async
// sharded save runs its commit's barriers on the background thread through the context's
// BackgroundSums (the job's store), not the communicator, whose collectives must stay in training's
// order on every rank; a context without them (no store) saves synchronously.
//
// BackupAndRestore and ModelCheckpoint (core/nn/callbacks.h) do this for fit().
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/nn/model.h"
#include "core/tensor/random.h"

namespace gradflow {

class ReplicaContext;
namespace checkpoint_files {
class Retention;
struct Snapshot;
}  // namespace checkpoint_files

struct CheckpointOptions {
  int max_to_keep = 5;  // older complete checkpoints are deleted after a save (0: keep all)
  // Besides the max_to_keep newest, one checkpoint per this many hours of wall time is kept for good
  // (as tf.train.CheckpointManager; 0: none). Counted from save times recorded in meta.json, so it holds
  // across restarts.
  double keep_every_n_hours = 0;
  // Policies for maybe_save() (0: off): save when step % save_every_n_steps == 0, or when at least
  // save_every_seconds have passed since this manager's last save (or since it was created).
  int64_t save_every_n_steps = 0;
  double save_every_seconds = 0;
  // save() snapshots the state to host memory and returns; a background thread writes it.
  bool async = false;
  // The wall clock, in seconds since the Unix epoch (empty: the system's). Tests pass their own.
  std::function<double()> now;
  // Under a ReplicaContext with several replicas: true, every replica calls save() (collectively) and
  // writes its shard; false, this process alone saves everything, unsharded (ModelCheckpoint's replica 0).
  bool sharded = true;
  // Testing: called on every rank once its files are written, before the commit (kill tests crash here).
  std::function<void(int64_t step)> before_commit;
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
  // ValueError naming the option and its value when one is negative.
  CheckpointManager(std::string dir, Model& model, CheckpointOptions options = {})
      : CheckpointManager(std::move(dir), model.impl(), std::move(options)) {}
  CheckpointManager(std::string dir, ModelImpl& model, CheckpointOptions options = {});
  // Waits for a pending async save; a failure is reported on stderr (a destructor must not throw).
  ~CheckpointManager();
  CheckpointManager(const CheckpointManager&) = delete;
  CheckpointManager& operator=(const CheckpointManager&) = delete;

  // Saves the model (built: it must have variables), the optimizer (when compiled) and the global RNG state
  // as checkpoint `step`; returns its path. Waits for the previous save first (throwing its error).
  // Sharded (several replicas in separate processes, options.sharded): every replica must call it with
  // the same arguments; Error on every rank (from save(), or from wait() when async), naming the ranks
  // that failed, when any rank's part failed.
  // Synchronous: returns once the checkpoint is committed; Error (with the path) when anything cannot be
  // written. Async: returns once the state is copied; errors come from the next wait() or save().
  std::string save(int64_t step, int64_t epoch = 0, const std::map<std::string, std::string>& extra = {});

  // Whether a save policy (save_every_n_steps, save_every_seconds) asks for a save at this step.
  // StateError when neither is set. Sharded with save_every_seconds: collective, rank 0's clock decides.
  bool should_save(int64_t step) const;
  // save() when should_save(step); the path, or nullopt when nothing was saved.
  std::optional<std::string> maybe_save(int64_t step, int64_t epoch = 0,
                                        const std::map<std::string, std::string>& extra = {});

  // Waits for the pending async save (if any); rethrows its error if it failed. Returns at once when
  // saves are synchronous.
  void wait();

  // Restores the checkpoint at path (model variables, optimizer slots and iterations, RNG state), from
  // one file per kind or from all the shards. Under a ReplicaContext, replica i takes generator state i
  // of the checkpoint, or one derived from it when the checkpoint had fewer replicas (shards.h). The
  // model must be built with the same variables. Error naming the file and problem when it is damaged or
  // does not match; nothing is changed then. Waits for a pending save first.
  CheckpointInfo restore(const std::string& path);

  // The newest usable checkpoint (`latest` first, then by descending step), restored; nullopt when there
  // is none. Damaged ones are reported on stderr and skipped. Waits for a pending save first.
  // Sharded (several replicas, options.sharded): collective; a checkpoint is used only when every rank
  // could load it, so all ranks resume from the same one.
  std::optional<CheckpointInfo> restore_latest();

  // The complete checkpoints in dir (those with a meta.json), by ascending step. A pending async save is
  // not among them until it is committed.
  std::vector<std::string> checkpoints() const;

  // Unsharded data-parallel saves: every replica's generator state (by replica id), saved by the next
  // save() beside this process's. (A sharded save gathers them itself.)
  void set_replica_rng_states(std::vector<GeneratorState> states) { replica_rng_ = std::move(states); }

 private:
  double now() const;
  checkpoint_files::Snapshot snapshot(int64_t step, int64_t epoch, const std::map<std::string, std::string>& extra);
  std::vector<std::string> prune(const std::string& just_saved);
  ReplicaContext* sharding_context() const;  // the context when saves are sharded, else nullptr
  void refuse_replica_threads(const char* what) const;  // StateError on a MirroredStrategy replica thread
  void in_background(std::function<void()> work);
  struct Loaded;  // a verified checkpoint, ready to assign
  Loaded load(const std::string& path);
  CheckpointInfo apply(Loaded& loaded);

  std::string dir_;
  ModelImpl& model_;
  CheckpointOptions options_;
  std::vector<GeneratorState> replica_rng_;
  std::unique_ptr<checkpoint_files::Retention> retention_;  // touched only by the save being written
  double last_save_at_;                                     // for save_every_seconds
  std::thread writer_;  // the last save's background work: the async write, deleting old checkpoints
  std::exception_ptr writer_error_;
};

// The sha256 of a file's bytes, as lowercase hex.
std::string sha256_file(const std::string& path);

}  // namespace gradflow
