// BackupAndRestore: a checkpoint per epoch, and resuming from it when fit starts again (callbacks.h).
#include <memory>

#include "core/checkpoint/checkpoint.h"
#include "core/nn/callbacks.h"
#include "core/nn/model.h"
#include "core/nn/replica_context.h"
#include "core/tensor/random.h"

namespace gradflow {
namespace {

class BackupAndRestoreCallback : public Callback {
 public:
  explicit BackupAndRestoreCallback(std::string dir) : dir_(std::move(dir)) {}

  void on_train_begin(const Logs&) override {
    // The model's variables must exist to be restored into: fit has built it (or it has an input shape).
    if (model_->variables().empty()) return;
    manager_ = std::make_unique<CheckpointManager>(dir_, *model_, CheckpointOptions{.max_to_keep = 2});
    if (std::optional<CheckpointInfo> info = manager_->restore_latest()) {
      model_->training->resume_epoch = static_cast<int>(info->epoch) + 1;
    }
  }

  void on_epoch_end(int epoch, const Logs&) override {
    if (!manager_) manager_ = std::make_unique<CheckpointManager>(dir_, *model_, CheckpointOptions{.max_to_keep = 2});
    ReplicaContext* ctx = current_replica_context();
    if (ctx) {
      // Every replica's generator (its dropout masks) goes into the checkpoint: gathered with one sum,
      // each replica filling its own slots, in 32-bit halves that a double holds exactly.
      std::vector<double> halves(4 * ctx->num_replicas(), 0.0);
      GeneratorState mine = global_generator().state();
      size_t at = 4 * static_cast<size_t>(ctx->replica_id());
      halves[at] = static_cast<double>(mine.seed >> 32);
      halves[at + 1] = static_cast<double>(mine.seed & 0xffffffffu);
      halves[at + 2] = static_cast<double>(mine.next_stream >> 32);
      halves[at + 3] = static_cast<double>(mine.next_stream & 0xffffffffu);
      std::vector<double> all = ctx->sum(halves);
      if (ctx->replica_id() != 0) return;  // replicas hold identical variables: one writer
      std::vector<GeneratorState> states;
      for (size_t r = 0; r < all.size(); r += 4) {
        states.push_back({(static_cast<uint64_t>(all[r]) << 32) | static_cast<uint64_t>(all[r + 1]),
                          (static_cast<uint64_t>(all[r + 2]) << 32) | static_cast<uint64_t>(all[r + 3])});
      }
      manager_->set_replica_rng_states(std::move(states));
    }
    manager_->save(epoch + 1, epoch);
  }

 private:
  std::string dir_;
  std::unique_ptr<CheckpointManager> manager_;
};

}  // namespace

CallbackPtr BackupAndRestore(std::string backup_dir) {
  return std::make_shared<BackupAndRestoreCallback>(std::move(backup_dir));
}

}  // namespace gradflow
