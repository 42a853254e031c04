// ModelCheckpoint: Keras' callback, saving through a CheckpointManager (callbacks.h).
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>

#include "core/checkpoint/checkpoint.h"
#include "core/nn/callbacks.h"
#include "core/nn/model.h"
#include "core/nn/replica_context.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace {

// 0 for "epoch", else the positive batch count; ValueError otherwise.
int64_t batches_between_saves(const std::string& save_freq) {
  if (save_freq == "epoch") return 0;
  int64_t n = 0;
  const char* end = save_freq.data() + save_freq.size();
  auto [at, ec] = std::from_chars(save_freq.data(), end, n);
  if (ec != std::errc() || at != end) n = 0;
  if (n <= 0) {
    throw ValueError(str_cat("ModelCheckpoint: save_freq must be \"epoch\" or a positive number of batches, got \"",
                             save_freq, "\""));
  }
  return n;
}

class ModelCheckpointCallback : public Callback {
 public:
  ModelCheckpointCallback(std::string dir, ModelCheckpointOptions o)
      : dir_(std::move(dir)), o_(std::move(o)), every_batches_(batches_between_saves(o_.save_freq)) {
    if (o_.mode != "min" && o_.mode != "max" && o_.mode != "auto") {
      throw ValueError(str_cat("ModelCheckpoint: mode must be min, max or auto, got ", o_.mode));
    }
    bool maximize = o_.mode == "max" || (o_.mode == "auto" && (o_.monitor.find("acc") != std::string::npos ||
                                                               o_.monitor.find("auc") != std::string::npos));
    sign_ = maximize ? 1 : -1;
    best_ = o_.initial_value_threshold.value_or(-sign_ * std::numeric_limits<double>::infinity());
  }

  void on_train_batch_end(int64_t, const Logs& logs) override {
    if (every_batches_ == 0 || ++batches_since_save_ < every_batches_) return;
    // Inside a gradient-accumulation group the summed gradients are in no checkpoint: wait for its end.
    if (model_->training->mid_accumulation_group) return;
    batches_since_save_ = 0;
    maybe_save(epoch_, logs);
  }
  void on_epoch_begin(int epoch, const Logs&) override { epoch_ = epoch; }
  void on_epoch_end(int epoch, const Logs& logs) override {
    if (every_batches_ == 0) maybe_save(epoch, logs);
  }
  // A pending async save is complete when fit returns, and its failure fails fit.
  void on_train_end(const Logs&) override {
    if (manager_) manager_->wait();
  }

 private:
  void maybe_save(int epoch, const Logs& logs) {
    ReplicaContext* ctx = current_replica_context();
    if (ctx && ctx->replica_id() != 0) return;  // replicas hold identical variables: one writer
    if (o_.save_best_only && !improved(logs)) return;
    if (!manager_) {
      manager_ = std::make_unique<CheckpointManager>(
          dir_, *model_, CheckpointOptions{.max_to_keep = o_.max_to_keep, .async = o_.async, .sharded = false});
    }
    std::map<std::string, std::string> extra;
    char value[32];
    for (const auto& [name, v] : logs) {
      std::snprintf(value, sizeof(value), "%.17g", v);
      extra[name] = value;
    }
    // The optimizer's iteration count numbers the checkpoints: unique and increasing across epochs,
    // batch-level saves and resumed runs.
    manager_->save(model_->training->optimizer->iterations(), epoch, extra);
  }

  bool improved(const Logs& logs) {
    auto it = logs.find(o_.monitor);
    if (it == logs.end()) {
      if (!warned_) {
        std::fprintf(stderr, "gradflow: ModelCheckpoint: can save best model only with %s available (logs:%s); skipping\n",
                     o_.monitor.c_str(), format_logs(logs).c_str());
        warned_ = true;
      }
      return false;
    }
    if (std::isnan(it->second) || !(sign_ * (it->second - best_) > 0)) return false;
    best_ = it->second;
    return true;
  }

  std::string dir_;
  ModelCheckpointOptions o_;
  int64_t every_batches_;
  double sign_ = -1;
  double best_ = 0;
  bool warned_ = false;
  int epoch_ = 0;
  int64_t batches_since_save_ = 0;
  std::unique_ptr<CheckpointManager> manager_;
};

}  // namespace

CallbackPtr ModelCheckpoint(std::string dir, ModelCheckpointOptions options) {
  return std::make_shared<ModelCheckpointCallback>(std::move(dir), std::move(options));
}

}  // namespace gradflow
