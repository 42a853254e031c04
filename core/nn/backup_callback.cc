// BackupAndRestore: checkpoints every epoch or every N batches, and resuming from them when fit starts
// again (callbacks.h).
//
// A mid-epoch checkpoint records in its meta.json "extra": the batches of its epoch already trained
// ("epoch_step"), the replica count, and in a single process the generator state at the epoch's start
// ("epoch_rng_*": fit draws the epoch's shuffle from it) and the data iterator's position
// ("data_iterator", base64 of IteratorState bytes, for fit(dataset)). Resuming replays the epoch's
// shuffle from the epoch-start state, skips the trained batches, then puts the generator back where the
// checkpoint left it. Data-parallel, the shuffle comes from a seed the replicas share (no draw from the
// global generator) and each replica's generator is in the checkpoint (rng_replicas).
//
// With gradient_accumulation_steps > 1 a batch-level save that falls inside a group waits for the end of
// the group (or of the epoch): the accumulated gradients are in no checkpoint, so one taken mid-group
// would lose them. The saved epoch_step is then a group boundary, and the resumed groups line up.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <memory>

#include "core/checkpoint/checkpoint.h"
#include "core/nn/callbacks.h"
#include "core/nn/model.h"
#include "core/nn/replica_context.h"
#include "core/tensor/error.h"
#include "core/tensor/random.h"

namespace gradflow {
namespace {

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(const std::string& bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t v = 0;
    for (size_t k = 0; k < 3; ++k) v = (v << 8) | (k < n ? static_cast<uint8_t>(bytes[i + k]) : 0u);
    for (size_t k = 0; k < 4; ++k) out += k <= n ? kBase64[(v >> (18 - 6 * k)) & 63] : '=';
  }
  return out;
}

std::string unbase64(const std::string& text) {
  std::string out;
  uint32_t v = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    const char* at = std::char_traits<char>::find(kBase64, 64, c);
    if (!at) throw ValueError(str_cat("BackupAndRestore: data_iterator in meta.json is not base64 (byte '", c, "')"));
    v = (v << 6) | static_cast<uint32_t>(at - kBase64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((v >> bits) & 0xff);
    }
  }
  return out;
}

int64_t parse_count(const std::string& what, const std::string& text) {
  int64_t n = 0;
  const char* end = text.data() + text.size();
  auto [at, ec] = std::from_chars(text.data(), end, n);
  if (ec != std::errc() || at != end || n < 0) throw ValueError(str_cat(what, ": expected a count, got \"", text, "\""));
  return n;
}

// 0 for "epoch", else the positive batch count.
int64_t batches_between_saves(const std::string& save_freq) {
  if (save_freq == "epoch") return 0;
  int64_t n = 0;
  const char* end = save_freq.data() + save_freq.size();
  auto [at, ec] = std::from_chars(save_freq.data(), end, n);
  if (ec != std::errc() || at != end || n <= 0) {
    throw ValueError(str_cat("BackupAndRestore: save_freq must be \"epoch\" or a positive number of batches, got \"",
                             save_freq, "\""));
  }
  return n;
}

class BackupAndRestoreCallback : public Callback {
 public:
  BackupAndRestoreCallback(std::string dir, BackupAndRestoreOptions options)
      : dir_(std::move(dir)), options_(std::move(options)), every_(batches_between_saves(options_.save_freq)) {}

  void on_train_begin(const Logs&) override {
    // The model's variables must exist to be restored into: fit has built it (or it has an input shape).
    if (model_->variables().empty()) return;
    std::optional<CheckpointInfo> info = manager().restore_latest();
    if (!info) return;
    batches_ = info->step;
    auto step = info->extra.find("epoch_step");
    auto data = info->extra.find("data_iterator");
    if (data != info->extra.end()) model_->training->resume_data_state = unbase64(data->second);
    if (step == info->extra.end()) {  // taken at the end of its epoch
      model_->training->resume_epoch = static_cast<int>(info->epoch) + 1;
      return;
    }
    model_->training->resume_epoch = static_cast<int>(info->epoch);
    int64_t saved_replicas = parse_count(info->path + " replicas", info->extra.at("replicas"));
    if (saved_replicas != replicas()) {
      model_->training->resume_data_state.clear();
      std::fprintf(stderr, "gradflow: BackupAndRestore: %s was taken mid-epoch by %lld replicas, this job has %d: "
                   "epoch %lld starts over from its weights\n", info->path.c_str(), static_cast<long long>(saved_replicas),
                   replicas(), static_cast<long long>(info->epoch));
      return;
    }
    model_->training->resume_step = parse_count(info->path + " epoch_step", step->second);
    if (!current_replica_context()) {
      mid_epoch_rng_ = global_generator().state();
      global_generator().set_state({static_cast<uint64_t>(std::stoull(info->extra.at("epoch_rng_seed"))),
                                    static_cast<uint64_t>(std::stoull(info->extra.at("epoch_rng_stream")))});
    }
  }

  void on_epoch_begin(int epoch, const Logs&) override {
    epoch_ = epoch;
    epoch_steps_ = 0;
    epoch_rng_ = global_generator().state();  // before fit draws the epoch's shuffle from it
  }

  // The first batch after a mid-epoch resume: the epoch's shuffle is replayed, the generator goes back
  // to where the checkpoint left it (its dropout masks).
  void on_train_batch_begin(int64_t, const Logs&) override { resume_generator(); }

  void on_train_batch_end(int64_t batch, const Logs&) override {
    ++batches_;
    epoch_steps_ = batch + 1;
    if (every_ > 0 && batches_ % every_ == 0) save_due_ = true;
    if (save_due_ && !model_->training->mid_accumulation_group) {
      save_due_ = false;
      save(epoch_, epoch_steps_);
    }
  }

  void on_epoch_end(int epoch, const Logs&) override {
    resume_generator();  // a checkpoint taken after an epoch's last batch resumes with no batch left
    if (save_due_) {  // deferred from inside the epoch's last (short) group, applied by now
      save_due_ = false;
      save(epoch, epoch_steps_);
    }
    if (every_ == 0) save(epoch, -1);
  }

 private:
  int replicas() const {
    ReplicaContext* ctx = current_replica_context();
    return ctx ? ctx->num_replicas() : 1;
  }

  CheckpointManager& manager() {
    if (!manager_) {
      manager_ = std::make_unique<CheckpointManager>(
          dir_, *model_, CheckpointOptions{.max_to_keep = 2, .before_commit = options_.before_commit});
    }
    return *manager_;
  }

  void resume_generator() {
    if (!mid_epoch_rng_) return;
    global_generator().set_state(*mid_epoch_rng_);
    mid_epoch_rng_.reset();
  }

  // epoch_step < 0: at the end of the epoch. Every replica calls it: the save is collective and sharded.
  void save(int epoch, int64_t epoch_step) {
    std::map<std::string, std::string> extra;
    const bool single = !current_replica_context();
    if (epoch_step >= 0) {
      extra["epoch_step"] = std::to_string(epoch_step);
      extra["replicas"] = std::to_string(replicas());
      if (single) {
        extra["epoch_rng_seed"] = std::to_string(epoch_rng_.seed);
        extra["epoch_rng_stream"] = std::to_string(epoch_rng_.next_stream);
      }
    }
    // Data-parallel replicas each read their own shard of a dataset: they skip the trained batches by
    // reading them again instead (the same pipeline gives the same batches).
    std::string position = single && model_->training->data_position ? model_->training->data_position() : "";
    if (!position.empty()) extra["data_iterator"] = base64(position);
    manager().save(batches_, epoch, extra);
  }

  std::string dir_;
  BackupAndRestoreOptions options_;
  int64_t every_;
  std::unique_ptr<CheckpointManager> manager_;
  int64_t batches_ = 0;  // trained since the job began: numbers the checkpoints
  int epoch_ = 0;
  int64_t epoch_steps_ = 0;  // batches of this epoch trained so far (counting those skipped by a resume)
  bool save_due_ = false;    // a batch-level save waits for the end of an accumulation group
  GeneratorState epoch_rng_;
  std::optional<GeneratorState> mid_epoch_rng_;  // set by a mid-epoch resume until its first batch
};

}  // namespace

CallbackPtr BackupAndRestore(std::string backup_dir, BackupAndRestoreOptions options) {
  return std::make_shared<BackupAndRestoreCallback>(std::move(backup_dir), std::move(options));
}

}  // namespace gradflow
