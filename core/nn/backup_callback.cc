// BackupAndRestore: checkpoints every epoch or every N batches, and resuming from them when fit starts
// again (callbacks.h).
//
// A mid-epoch checkpoint records in its meta.json "extra": the batches of its epoch already trained
// ("epoch_step"), the replica count, and in a single process the generator state at the epoch's start
// ("epoch_rng_*": fit draws the epoch's shuffle from it) and the data iterator's position
// ("data_iterator", base64 of IteratorState bytes, for fit(dataset)). Resuming replays the epoch's
// shuffle from the epoch-start state, skips the trained batches, then puts the generator back where the
// checkpoint left it. With replicas, the shuffle comes from a seed the replicas share (no draw from the
// global generator; saved as "shuffle_seed" and put back on resume); data-parallel processes each have
// their generator in the checkpoint (rng_replicas), and so is each
// replica's data iterator ("data_iterator_replica_<r>", gathered to every rank before the save). Every
// checkpoint records "replicas": iterator positions are restored only on as many replicas as saved them.
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
#include "core/nn/replica_gather.h"
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

// The context of replicas in other processes (each saves and restores its own part); nullptr when this
// process holds all the state: alone, or with replicas on its threads (MirroredStrategy: the calling
// thread draws the shuffles and reads the data, as a single process does).
ReplicaContext* other_processes() {
  ReplicaContext* ctx = current_replica_context();
  return ctx && !ctx->in_process() ? ctx : nullptr;
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
    if (auto seed = info->extra.find("shuffle_seed"); seed != info->extra.end()) {
      model_->training->shuffle_seed = static_cast<uint64_t>(parse_count(info->path + " shuffle_seed", seed->second));
    }
    auto step = info->extra.find("epoch_step");
    // Older epoch-end checkpoints lack "replicas"; their one data_iterator came from a single process.
    auto count = info->extra.find("replicas");
    int64_t saved_replicas = count == info->extra.end() ? 1 : parse_count(info->path + " replicas", count->second);
    restore_data_state(*info, saved_replicas);
    if (step == info->extra.end()) {  // taken at the end of its epoch
      model_->training->resume_epoch = static_cast<int>(info->epoch) + 1;
      return;
    }
    model_->training->resume_epoch = static_cast<int>(info->epoch);
    if (saved_replicas != replicas()) {
      model_->training->resume_data_state.clear();
      std::fprintf(stderr, "gradflow: BackupAndRestore: %s was taken mid-epoch by %lld replicas, this job has %d: "
                   "epoch %lld starts over from its weights\n", info->path.c_str(), static_cast<long long>(saved_replicas),
                   replicas(), static_cast<long long>(info->epoch));
      return;
    }
    model_->training->resume_step = parse_count(info->path + " epoch_step", step->second);
    if (!other_processes()) {
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

  // The data position this process resumes from: its own entry, when as many replicas saved the
  // checkpoint as run now (positions of other shardings do not map: the epoch is read from its start).
  void restore_data_state(const CheckpointInfo& info, int64_t saved_replicas) {
    ReplicaContext* ctx = other_processes();
    std::string key = ctx ? str_cat("data_iterator_replica_", ctx->replica_id()) : "data_iterator";
    auto data = info.extra.find(key);
    // One replica under a context reads the unsharded pipeline too (auto_shard of 1 is the dataset).
    if (data == info.extra.end()) data = info.extra.find(ctx ? "data_iterator" : "data_iterator_replica_0");
    if (saved_replicas == replicas() && data != info.extra.end()) {
      model_->training->resume_data_state = unbase64(data->second);
    } else if (saved_replicas != replicas() && info.extra.count("epoch_step") == 0 &&
               (info.extra.count("data_iterator") || info.extra.count("data_iterator_replica_0"))) {
      std::fprintf(stderr, "gradflow: BackupAndRestore: %s holds the data positions of %lld replicas, this job has %d: "
                   "the dataset's pass count (its reshuffling) starts over\n", info.path.c_str(),
                   static_cast<long long>(saved_replicas), replicas());
    }
  }

  void resume_generator() {
    if (!mid_epoch_rng_) return;
    global_generator().set_state(*mid_epoch_rng_);
    mid_epoch_rng_.reset();
  }

  // epoch_step < 0: at the end of the epoch. Every replica calls it: the save is collective and sharded.
  void save(int epoch, int64_t epoch_step) {
    std::map<std::string, std::string> extra;
    ReplicaContext* ctx = other_processes();
    const bool single = !ctx;
    extra["replicas"] = std::to_string(replicas());
    if (model_->training->shuffle_seed) extra["shuffle_seed"] = std::to_string(*model_->training->shuffle_seed);
    if (epoch_step >= 0) {
      extra["epoch_step"] = std::to_string(epoch_step);
      if (single) {
        extra["epoch_rng_seed"] = std::to_string(epoch_rng_.seed);
        extra["epoch_rng_stream"] = std::to_string(epoch_rng_.next_stream);
      }
    }
    // Data-parallel replicas each read their own shard of a dataset: every replica's position goes into
    // the checkpoint (rank 0 writes meta.json, so all are gathered; collective, like the save).
    std::string position = model_->training->data_position ? model_->training->data_position() : "";
    if (single && !position.empty()) extra["data_iterator"] = base64(position);
    if (ctx) {
      std::vector<std::string> all = all_gather_bytes(*ctx, position);
      for (size_t r = 0; r < all.size(); ++r) {
        if (!all[r].empty()) extra[str_cat("data_iterator_replica_", r)] = base64(all[r]);
      }
    }
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
