// BackupAndRestore: a checkpoint per epoch, and resuming from it when fit starts again (callbacks.h).
#include <memory>

#include "core/checkpoint/checkpoint.h"
#include "core/nn/callbacks.h"
#include "core/nn/model.h"
#include "core/nn/replica_context.h"

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
    ReplicaContext* ctx = current_replica_context();
    if (ctx && ctx->replica_id() != 0) return;  // replicas are identical: one writer
    if (!manager_) manager_ = std::make_unique<CheckpointManager>(dir_, *model_, CheckpointOptions{.max_to_keep = 2});
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
