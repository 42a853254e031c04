// The settings and results of Keras-style training: compile() specs, fit/evaluate options, History.
#pragma once

#include <concepts>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/data/dataset.h"
#include "core/data/sharding.h"
#include "core/nn/callbacks.h"
#include "core/optim/losses.h"
#include "core/optim/metrics.h"
#include "core/optim/optimizer.h"

namespace gradflow {

// An optimizer object or its Keras name ("adam", "sgd", ...).
struct OptimizerSpec {
  template <typename O>
    requires std::derived_from<O, optimizers::Optimizer>
  OptimizerSpec(std::shared_ptr<O> o) : optimizer(std::move(o)) {}  // NOLINT
  OptimizerSpec(const char* name);                                            // NOLINT
  OptimizerSpec(const std::string& name) : OptimizerSpec(name.c_str()) {}    // NOLINT
  std::shared_ptr<optimizers::Optimizer> optimizer;
};
// A loss object or its Keras name ("sparse_categorical_crossentropy", "mse", ...).
struct LossSpec {
  template <typename L>
    requires std::derived_from<L, losses::Loss>
  LossSpec(std::shared_ptr<L> l) : loss(std::move(l)) {}  // NOLINT
  LossSpec(const char* name);                                // NOLINT
  LossSpec(const std::string& name) : LossSpec(name.c_str()) {}  // NOLINT
  std::shared_ptr<losses::Loss> loss;
  std::string name;
};
// A metric object or its Keras name ("accuracy" resolves against the loss, as in Keras).
struct MetricSpec {
  template <typename M>
    requires std::derived_from<M, metrics::Metric>
  MetricSpec(std::shared_ptr<M> m) : metric(std::move(m)) {}  // NOLINT
  MetricSpec(const char* n) : name(n) {}                           // NOLINT
  MetricSpec(const std::string& n) : name(n) {}                    // NOLINT
  std::shared_ptr<metrics::Metric> metric;
  std::string name;
};

struct TrainingConfig {
  std::shared_ptr<optimizers::Optimizer> optimizer;
  std::shared_ptr<losses::Loss> loss;
  std::vector<std::shared_ptr<metrics::Metric>> metrics;
  bool stop_training = false;  // set by callbacks (EarlyStopping) to end fit after this epoch
  int resume_epoch = -1;       // set by a callback's on_train_begin (BackupAndRestore): fit starts there
  // Mid-epoch resume (BackupAndRestore with a batch save_freq), set with resume_epoch: the batches of
  // that epoch already trained, which fit skips, and for fit(dataset) the iterator position after them
  // (IteratorState bytes; empty: fit reads and drops those batches instead).
  int64_t resume_step = 0;
  std::string resume_data_state;
  // Set by fit(dataset) for each epoch: the position of that epoch's iterator (IteratorState bytes;
  // empty when the pipeline cannot save it, as with from_generator).
  std::function<std::string()> data_position;
  // Replicas' fit on tensors: the seed every epoch's shuffle derives from (seed + epoch), drawn by
  // replica 0 when fit starts. A checkpoint records it and a resume puts it back, so the resumed epochs
  // shuffle as the saved run's did whatever the restarted process's own seed.
  std::optional<uint64_t> shuffle_seed;
  // Set by fit before each on_train_batch_end: with gradient_accumulation_steps > 1, whether that batch
  // left a group unfinished (its gradients summed but not yet applied). A checkpoint taken then would
  // lose them, so BackupAndRestore defers a batch-level save to the group's end.
  bool mid_accumulation_group = false;
};
double current_learning_rate(const TrainingConfig& t);
void set_learning_rate(TrainingConfig& t, double lr);

struct History {
  std::vector<int> epoch;
  std::map<std::string, std::vector<double>> history;  // "loss", "accuracy", "val_loss", ...
};

struct ValidationData {
  Tensor x, y;
};

struct FitOptions {
  int epochs = 1;
  int64_t batch_size = 32;  // for tensors; a dataset brings its own batches
  std::optional<ValidationData> validation_data;
  std::optional<Dataset> validation_dataset;  // (x, y) batches, evaluated after each epoch
  std::vector<CallbackPtr> callbacks;
  bool shuffle = true;  // reshuffle the examples every epoch (from the global Philox generator)
  int verbose = 1;      // 0 silent, 1 progress bar, 2 one line per epoch
  int initial_epoch = 0;
  // Gradient accumulation: the optimizer (and, data-parallel, the all-reduce) runs once per this many
  // batches, on the gradients averaged over all their rows; the last group of an epoch may be short.
  int gradient_accumulation_steps = 1;
  // Data-parallel fit(dataset): which part of the dataset each replica reads (core/data/sharding.h).
  AutoShardPolicy shard_policy = AutoShardPolicy::kAuto;
};

struct EvaluateOptions {
  int64_t batch_size = 32;
  int verbose = 0;
  std::vector<CallbackPtr> callbacks;
  AutoShardPolicy shard_policy = AutoShardPolicy::kAuto;  // data-parallel evaluate(dataset)
};

}  // namespace gradflow
