// Keras-style callbacks for fit/evaluate: hooks at the start and end of training, epochs and batches,
// with the current logs (loss and metric values by name).
//
//   model.fit(x, y, {.epochs = 20, .validation_data = {{x_val, y_val}},
//                    .callbacks = {EarlyStopping({.monitor = "val_loss", .patience = 2})}});
#pragma once

#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gradflow {

class ModelImpl;
using Logs = std::map<std::string, double>;

class Callback {
 public:
  virtual ~Callback() = default;
  virtual void set_model(ModelImpl* model) { model_ = model; }
  virtual void set_params(int epochs, int64_t steps) {
    epochs_ = epochs;
    steps_ = steps;
  }
  virtual void on_train_begin(const Logs& logs) {}
  virtual void on_train_end(const Logs& logs) {}
  virtual void on_epoch_begin(int epoch, const Logs& logs) {}
  virtual void on_epoch_end(int epoch, const Logs& logs) {}
  virtual void on_train_batch_begin(int64_t batch, const Logs& logs) {}
  virtual void on_train_batch_end(int64_t batch, const Logs& logs) {}
  virtual void on_test_begin(const Logs& logs) {}
  virtual void on_test_end(const Logs& logs) {}
  virtual void on_test_batch_end(int64_t batch, const Logs& logs) {}

 protected:
  ModelImpl* model_ = nullptr;
  int epochs_ = 0;
  int64_t steps_ = 0;
};
using CallbackPtr = std::shared_ptr<Callback>;

// The Keras progress bar (verbose=1): updated in place on a terminal, one line per epoch otherwise;
// verbose=2 prints one line per epoch without a bar.
//   1875/1875 [==============================] - 2s 1ms/step - loss: 0.4977 - accuracy: 0.8251
CallbackPtr ProgbarLogger(int verbose = 1, std::ostream* out = nullptr, std::optional<bool> interactive = std::nullopt);

struct EarlyStoppingOptions {
  std::string monitor = "val_loss";
  double min_delta = 0;
  int patience = 0;
  std::string mode = "auto";  // "min", "max", or "auto" (max for accuracy-like names)
  std::optional<double> baseline;
  bool restore_best_weights = false;
};
CallbackPtr EarlyStopping(EarlyStoppingOptions options = {});

// schedule(epoch, current_lr) -> new lr, applied at the start of each epoch.
CallbackPtr LearningRateScheduler(std::function<double(int epoch, double lr)> schedule);

// One row per epoch: epoch, then the logs' keys in sorted order.
CallbackPtr CSVLogger(std::string filename, char separator = ',', bool append = false);

struct TensorBoardOptions {
  std::string log_dir = "logs";
  // "epoch": scalars once per epoch; a number N: also batch-level scalars every N steps.
  std::string update_freq = "epoch";
  int histogram_freq = 0;  // every N epochs, a histogram of each weight (0: never)
  bool write_graph = true;
};
// Keras' TensorBoard callback: event files under log_dir/train and log_dir/validation with epoch_loss,
// epoch_<metric> (and batch_* with a numeric update_freq), weight histograms and the layer graph.
CallbackPtr TensorBoard(TensorBoardOptions options = {});

struct BackupAndRestoreOptions {
  // "epoch": a checkpoint at the end of every epoch; a number N: every N batches (counted across epochs,
  // as Keras), and fit resumes at the exact batch after it. With gradient_accumulation_steps > 1 a save
  // that falls inside a group waits for the group's end (its summed gradients are in no checkpoint).
  std::string save_freq = "epoch";
  // Testing: CheckpointOptions::before_commit (kill tests crash a save between its files and its commit).
  std::function<void(int64_t step)> before_commit;
};
// Keras' BackupAndRestore: checkpoints of the model, optimizer, RNG (every replica's) and data position
// in backup_dir (core/checkpoint; sharded and collective under data-parallel training); when fit starts
// and a checkpoint is there, training resumes where it was taken, bitwise as if it had not stopped (a
// mid-epoch checkpoint resumes mid-epoch when the replica count is the same; with another count, that
// epoch starts over from the checkpoint's weights). Data-parallel fit(dataset) checkpoints hold every
// replica's data position, which a resume on as many replicas continues from. Checkpoints are numbered
// by the batches trained.
// Give every run of a job the same backup_dir. ValueError for a bad save_freq.
CallbackPtr BackupAndRestore(std::string backup_dir, BackupAndRestoreOptions options = {});

struct ModelCheckpointOptions {
  std::string monitor = "val_loss";  // the log value save_best_only compares
  std::string mode = "auto";         // "min", "max", or "auto" (max for names with "acc" or "auc", as Keras)
  bool save_best_only = false;       // save only when the monitored value improved on the best so far
  std::string save_freq = "epoch";   // "epoch", or a number N: every N batches
  std::optional<double> initial_value_threshold;  // save_best_only: the value to beat first
  int max_to_keep = 5;   // the CheckpointManager's (core/checkpoint): older checkpoints are deleted
  bool async = false;    // the CheckpointManager's: training goes on while a checkpoint is written
};
// Keras' ModelCheckpoint: checkpoints of the model, optimizer and RNG in dir through a CheckpointManager
// (atomic, verified; named by the optimizer's iteration count, each with the logs in its `extra`), at the
// end of every epoch or every N batches, or only when the monitored value improves. A monitored value
// missing from the logs is reported once on stderr and nothing is saved. Data-parallel: replica 0 writes
// (its generator state only; BackupAndRestore keeps every replica's). ValueError for a bad mode/save_freq.
CallbackPtr ModelCheckpoint(std::string dir, ModelCheckpointOptions options = {});

// Formats one Keras log value (" - loss: 0.4977").
std::string format_logs(const Logs& logs);
// The progress bar's times, as Keras prints them: time spent rounded to whole seconds ("1s" for
// 0.98 s, "125s"), an ETA truncated ("2:05", "7s").
std::string format_elapsed(double seconds);
std::string format_eta(double seconds);

}  // namespace gradflow
