#include "core/checkpoint/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/checkpoint/files.h"
#include "core/checkpoint/retention.h"
#include "core/checkpoint/sharded_commit.h"
#include "core/checkpoint/shards.h"
#include "core/checkpoint/snapshot.h"
#include "core/io/safetensors.h"
#include "core/nn/replica_context.h"
#include "core/tensor/error.h"
#include "core/tensor/random.h"
#include "nlohmann/json.hpp"

namespace gradflow {
namespace {

namespace fs = std::filesystem;
using checkpoint_files::read_text;
using checkpoint_files::Snapshot;
constexpr int kFormatVersion = 1;
constexpr char kFormat[] = "gradflow-checkpoint";
constexpr char kDeleting[] = ".deleting";  // <dir>/.ckpt-<step>.deleting: pruned, being deleted

void delete_all(const std::vector<std::string>& paths) {
  for (const std::string& path : paths) {
    // Another deleter (a restarted manager cleaning leftovers while this one's background deletion runs)
    // may remove entries under our feet: a vanished entry is no error, as long as the tree ends up gone.
    std::error_code ec;
    for (int attempt = 0; attempt < 5; ++attempt) {
      ec.clear();
      fs::remove_all(path, ec);
      if (!ec || ec != std::errc::no_such_file_or_directory) break;
    }
    if (ec && ec != std::errc::no_such_file_or_directory) {
      throw Error(str_cat(path, ": cannot delete an old checkpoint: ", ec.message()));
    }
  }
}

// A sharded save's pruning, after the commit: only rank 0 deletes, so a failure must not become an error
// of rank 0's alone (its next save would throw where the other ranks' would not, and they would wait
// for it in the barriers): it is reported, and the leftover goes with the next manager on this directory.
void delete_after_sharded_commit(const std::vector<std::string>& paths) {
  try {
    delete_all(paths);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gradflow: %s (the next CheckpointManager on this directory deletes it)\n", e.what());
  }
}

std::optional<int64_t> step_of(const std::string& name) {
  if (name.rfind("ckpt-", 0) != 0 || name.size() == 5) return std::nullopt;
  int64_t step = 0;
  for (char c : name.substr(5)) {
    if (c < '0' || c > '9') return std::nullopt;
    step = step * 10 + (c - '0');
  }
  return step;
}

std::vector<std::pair<std::string, Tensor>> named_values(const std::vector<Variable>& vars) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const Variable& v : vars) out.emplace_back(v.name(), v.value_unwatched());
  return out;
}

// The variables' dtype ("f32"), or every dtype they use joined by "+" ("bf16+f32").
std::string dtype_policy(const std::vector<Variable>& vars) {
  std::set<std::string> names;
  for (const Variable& v : vars) names.insert(std::string(dtype_name(v.dtype())));
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : "+") + n;
  return out;
}

optimizers::Optimizer* optimizer_of(ModelImpl& model) {
  return model.training ? model.training->optimizer.get() : nullptr;
}

// Checks that the files hold a value for every variable, of its shape and dtype; the values to assign.
std::vector<Tensor> matching_values(const checkpoint_files::MergedFiles& files, const std::vector<Variable>& vars) {
  std::vector<Tensor> values;
  for (const Variable& v : vars) {
    auto it = files.tensors.find(v.name());
    if (it == files.tensors.end()) throw ValueError(str_cat(files.label, ": has no variable \"", v.name(), "\""));
    if (it->second.shape() != v.shape() || it->second.dtype() != v.dtype()) {
      throw ValueError(str_cat(files.origin.at(v.name()), ": \"", v.name(), "\" is ", shape_str(it->second.shape()), " ",
                               dtype_name(it->second.dtype()), " but the model's is ", shape_str(v.shape()), " ",
                               dtype_name(v.dtype())));
    }
    values.push_back(it->second.to(v.device()));
  }
  if (files.tensors.size() != vars.size()) {
    for (const auto& [name, t] : files.tensors) {
      bool known = std::any_of(vars.begin(), vars.end(), [&](const Variable& v) { return v.name() == name; });
      if (!known) throw ValueError(str_cat(files.origin.at(name), ": holds \"", name, "\", which the model does not have"));
    }
  }
  return values;
}

}  // namespace

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(str_cat(path, ": cannot open"));
  checkpoint_files::Sha256 sha;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    sha.update(buffer.data(), static_cast<size_t>(in.gcount()));
  }
  return sha.hex();
}

CheckpointManager::CheckpointManager(std::string dir, ModelImpl& model, CheckpointOptions options)
    : dir_(std::move(dir)), model_(model), options_(std::move(options)) {
  auto non_negative = [&](const char* name, double value) {
    if (value < 0) throw ValueError(str_cat(dir_, ": CheckpointOptions.", name, " must not be negative, got ", value));
  };
  non_negative("max_to_keep", options_.max_to_keep);
  non_negative("keep_every_n_hours", options_.keep_every_n_hours);
  non_negative("save_every_n_steps", static_cast<double>(options_.save_every_n_steps));
  non_negative("save_every_seconds", options_.save_every_seconds);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw Error(str_cat(dir_, ": cannot create the checkpoint directory: ", ec.message()));
  // Checkpoints a crashed job had pruned but not yet deleted.
  std::vector<std::string> leftovers;
  for (const fs::directory_entry& e : fs::directory_iterator(dir_)) {
    std::string name = e.path().filename().string();
    if (name.starts_with(".ckpt-") && name.ends_with(kDeleting)) leftovers.push_back(e.path().string());
  }
  delete_all(leftovers);
  last_save_at_ = now();
  retention_ = std::make_unique<checkpoint_files::Retention>(options_.max_to_keep, options_.keep_every_n_hours,
                                                             checkpoints(), last_save_at_);
}

CheckpointManager::~CheckpointManager() {
  try {
    wait();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gradflow: the last checkpoint save in %s failed: %s\n", dir_.c_str(), e.what());
  }
}

double CheckpointManager::now() const {
  if (options_.now) return options_.now();
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The state to save, taken on the caller's thread: meta.json's fields and the tensors (sharing the
// variables' memory until host_copy).
Snapshot CheckpointManager::snapshot(int64_t step, int64_t epoch, const std::map<std::string, std::string>& extra) {
  std::vector<Variable> vars = model_.variables();
  if (vars.empty()) throw StateError(str_cat(dir_, ": save: the model has no variables yet (build it first)"));
  Snapshot s;
  s.step = step;
  s.meta = {{"format", kFormat}, {"version", kFormatVersion}, {"step", step}, {"epoch", epoch},
            {"world_size", 1}, {"extra", extra}, {"saved_at", now()},
            {"last_preserved_at", retention_->last_preserved_at()}};
  GeneratorState rng = global_generator().state();
  s.meta["rng"] = {{"seed", rng.seed}, {"next_stream", rng.next_stream}};
  if (!replica_rng_.empty()) {
    s.meta["rng_replicas"] = nlohmann::json::array();
    for (const GeneratorState& r : replica_rng_) s.meta["rng_replicas"].push_back({{"seed", r.seed}, {"next_stream", r.next_stream}});
  }
  ReplicaContext* ctx = current_replica_context();
  s.meta["strategy"] = ctx ? ctx->strategy_name() : "default";
  s.meta["dtype_policy"] = dtype_policy(vars);
  s.files.push_back({"model.safetensors", named_values(vars)});
  if (optimizers::Optimizer* opt = optimizer_of(model_)) {
    opt->build(model_.trainable_variables());
    s.files.push_back({"optimizer.safetensors", named_values(opt->variables())});
    s.meta["optimizer"] = {{"name", opt->name()}, {"iterations", opt->iterations()},
                           {"learning_rate", opt->learning_rate()}, {"config", opt->get_config()}};
  }
  s.before_commit = options_.before_commit;
  return s;
}

// Takes what the retention rule drops out of the listing (a rename to a hidden name, instant); returns
// those, for the caller to delete.
std::vector<std::string> CheckpointManager::prune(const std::string& just_saved) {
  std::vector<std::string> doomed;
  for (const std::string& path : retention_->prune(checkpoints(), just_saved)) {
    std::string hidden = str_cat(dir_, "/.", fs::path(path).filename().string(), kDeleting);
    std::error_code ec;
    fs::remove_all(hidden, ec);
    fs::rename(path, hidden, ec);
    if (ec) throw Error(str_cat(path, ": cannot move an old checkpoint aside to delete it: ", ec.message()));
    doomed.push_back(hidden);
  }
  return doomed;
}

ReplicaContext* CheckpointManager::sharding_context() const {
  // Replicas on threads of this process (MirroredStrategy) share one copy of the state: this process
  // writes it whole, as a single one does.
  ReplicaContext* ctx = options_.sharded ? current_replica_context() : nullptr;
  return ctx && ctx->num_replicas() > 1 && !ctx->in_process() ? ctx : nullptr;
}

void CheckpointManager::in_background(std::function<void()> work) {
  writer_ = std::thread([this, work = std::move(work)] {
    try {
      work();
    } catch (...) {
      writer_error_ = std::current_exception();
    }
  });
}

void CheckpointManager::refuse_replica_threads(const char* what) const {
  ReplicaContext* ctx = current_replica_context();
  if (ctx && ctx->on_replica_thread()) {
    throw StateError(str_cat(dir_, ": ", what, " called on a replica thread (inside MirroredStrategy's run()): every ",
                             "replica would do it at once; call it on the thread that calls run()"));
  }
}

std::string CheckpointManager::save(int64_t step, int64_t epoch, const std::map<std::string, std::string>& extra) {
  refuse_replica_threads("save");
  wait();
  // The shards hold the replicas' mean of what they keep apart (moving statistics); the live values stay
  // each replica's own, so saving never changes the run (fit averages them at each epoch's end).
  std::vector<std::pair<Variable, Tensor>> means;
  if (ReplicaContext* ctx = sharding_context()) means = replicas_mean_of_mean_aggregated(*ctx, model_.variables());
  Snapshot s = snapshot(step, epoch, extra);
  for (auto& [name, value] : s.files.front().tensors) {
    for (const auto& [v, mean] : means) {
      if (v.name() == name) value = mean;
    }
  }
  last_save_at_ = s.meta["saved_at"].get<double>();
  std::string final_dir = str_cat(dir_, "/ckpt-", step);
  if (ReplicaContext* ctx = sharding_context()) {
    checkpoint_files::keep_shard(s, ctx->replica_id(), ctx->num_replicas());
    checkpoint_files::RankSums ranks{ctx->replica_id(), ctx->num_replicas(), {}};
    // Async: the barriers go through background sums, whose order is their own (opening them is
    // collective: every rank does it here).
    std::shared_ptr<ReplicaContext::BackgroundSums> background = options_.async ? ctx->background_sums() : nullptr;
    if (background) {
      ranks.sum = [background](const std::vector<double>& v) { return background->sum(v); };
    } else {
      ranks.sum = [ctx](const std::vector<double>& v) { return ctx->sum(v); };
    }
    auto commit = [this, ranks](const Snapshot& snapshot) {  // what pruning dropped (rank 0 prunes)
      std::vector<std::string> doomed;
      checkpoint_files::commit_sharded(dir_, snapshot, ranks, [&](const std::string& committed) { doomed = prune(committed); });
      return doomed;
    };
    if (!background) {
      std::vector<std::string> doomed = commit(s);
      if (!doomed.empty()) in_background([doomed] { delete_after_sharded_commit(doomed); });
      return final_dir;
    }
    checkpoint_files::host_copy(s);
    in_background([commit, s = std::move(s)] { delete_after_sharded_commit(commit(s)); });
    return final_dir;
  }
  if (!options_.async) {
    std::vector<std::string> doomed = prune(checkpoint_files::commit_snapshot(dir_, s));
    if (!doomed.empty()) in_background([doomed] { delete_all(doomed); });
    return final_dir;
  }
  checkpoint_files::host_copy(s);  // from here on, training may change the variables
  in_background([this, s = std::move(s)] { delete_all(prune(checkpoint_files::commit_snapshot(dir_, s))); });
  return final_dir;
}

void CheckpointManager::wait() {
  if (writer_.joinable()) writer_.join();
  if (writer_error_) {
    std::exception_ptr error = writer_error_;
    writer_error_ = nullptr;
    std::rethrow_exception(error);
  }
}

bool CheckpointManager::should_save(int64_t step) const {
  if (options_.save_every_n_steps == 0 && options_.save_every_seconds == 0) {
    throw StateError(str_cat(dir_, ": should_save: no save policy is set (save_every_n_steps or save_every_seconds)"));
  }
  if (options_.save_every_n_steps > 0 && step % options_.save_every_n_steps == 0) return true;
  if (options_.save_every_seconds <= 0) return false;
  bool due = now() - last_save_at_ >= options_.save_every_seconds;
  // Ranks' clocks differ: all must agree to call the collective save, so rank 0's decides.
  if (ReplicaContext* ctx = sharding_context()) return ctx->sum({ctx->replica_id() == 0 && due ? 1.0 : 0.0})[0] > 0;
  return due;
}

std::optional<std::string> CheckpointManager::maybe_save(int64_t step, int64_t epoch,
                                                         const std::map<std::string, std::string>& extra) {
  if (!should_save(step)) return std::nullopt;
  return save(step, epoch, extra);
}

struct CheckpointManager::Loaded {
  CheckpointInfo info;
  std::vector<Variable> vars, slots;
  std::vector<Tensor> values, slot_values;
  std::optional<GeneratorState> rng;
};

// Reads and verifies everything before anything is assigned.
CheckpointManager::Loaded CheckpointManager::load(const std::string& path) {
  nlohmann::json meta = nlohmann::json::parse(read_text(str_cat(path, "/meta.json")), nullptr, false);
  if (meta.is_discarded() || !meta.is_object() || meta.value("format", "") != kFormat) {
    throw ValueError(str_cat(path, "/meta.json: not a gradflow checkpoint's metadata"));
  }
  if (meta.value("version", 0) != kFormatVersion) {
    throw ValueError(str_cat(path, "/meta.json: format version ", meta.value("version", 0), ", expected ", kFormatVersion));
  }
  std::map<std::string, SafetensorsFile> contents;
  if (!meta.contains("files") || !meta["files"].is_object()) throw ValueError(str_cat(path, "/meta.json: no files listed"));
  for (auto it = meta["files"].begin(); it != meta["files"].end(); ++it) {
    std::string file = str_cat(path, "/", it.key());
    if (!fs::exists(file)) throw ValueError(str_cat(file, ": missing"));
    uint64_t bytes = fs::file_size(file);
    if (bytes != it.value().value("bytes", uint64_t{0})) {
      throw ValueError(str_cat(file, ": ", bytes, " bytes, meta.json says ", it.value().value("bytes", uint64_t{0})));
    }
    if (sha256_file(file) != it.value().value("sha256", "")) throw ValueError(str_cat(file, ": sha256 does not match meta.json"));
    absl::StatusOr<SafetensorsFile> f = read_safetensors(file);
    if (!f.ok()) throw ValueError(std::string(f.status().message()));
    contents[it.key()] = std::move(*f);
  }
  checkpoint_files::MergedFiles model_files = checkpoint_files::merge_files(path, contents, "model");
  if (model_files.empty()) throw ValueError(str_cat(path, ": no model.safetensors (nor shards of it)"));
  Loaded loaded;
  loaded.vars = model_.variables();
  loaded.values = matching_values(model_files, loaded.vars);
  checkpoint_files::MergedFiles optimizer_files = checkpoint_files::merge_files(path, contents, "optimizer");
  optimizers::Optimizer* opt = optimizer_of(model_);
  if (opt && !optimizer_files.empty()) {
    opt->build(model_.trainable_variables());
    loaded.slots = opt->variables();
    loaded.slot_values = matching_values(optimizer_files, loaded.slots);
  }
  // A data-parallel checkpoint holds every replica's generator: each takes its own (or a derived one).
  ReplicaContext* ctx = current_replica_context();
  loaded.rng = checkpoint_files::replica_generator_state(meta, ctx ? ctx->replica_id() : 0);
  loaded.info = {path, meta.value("step", int64_t{0}), meta.value("epoch", int64_t{0}), {}};
  if (meta.contains("extra") && meta["extra"].is_object()) {
    loaded.info.extra = meta["extra"].get<std::map<std::string, std::string>>();
  }
  return loaded;
}

CheckpointInfo CheckpointManager::apply(Loaded& loaded) {
  for (size_t i = 0; i < loaded.vars.size(); ++i) loaded.vars[i].assign(loaded.values[i]);
  for (size_t i = 0; i < loaded.slots.size(); ++i) loaded.slots[i].assign(loaded.slot_values[i]);
  if (loaded.rng) global_generator().set_state(*loaded.rng);
  return loaded.info;
}

CheckpointInfo CheckpointManager::restore(const std::string& path) {
  refuse_replica_threads("restore");
  wait();
  Loaded loaded = load(path);
  return apply(loaded);
}

std::vector<std::string> CheckpointManager::checkpoints() const {
  std::vector<std::pair<int64_t, std::string>> found;
  for (const fs::directory_entry& e : fs::directory_iterator(dir_)) {
    std::optional<int64_t> step = step_of(e.path().filename().string());
    if (step && e.is_directory() && fs::exists(e.path() / "meta.json")) found.emplace_back(*step, e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [step, path] : found) out.push_back(path);
  return out;
}

std::optional<CheckpointInfo> CheckpointManager::restore_latest() {
  refuse_replica_threads("restore_latest");
  wait();
  std::vector<std::string> candidates;
  std::ifstream latest(str_cat(dir_, "/latest"));
  std::string name;
  if (latest >> name) candidates.push_back(str_cat(dir_, "/", name));
  std::vector<std::string> all = checkpoints();
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (std::find(candidates.begin(), candidates.end(), *it) == candidates.end()) candidates.push_back(*it);
  }
  ReplicaContext* ctx = sharding_context();
  for (const std::string& path : candidates) {
    std::optional<Loaded> loaded;
    try {
      loaded = load(path);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "gradflow: checkpoint %s is unusable (%s); trying the previous one\n", path.c_str(), e.what());
    }
    // Sharded: every rank sees the same directory and tries the same candidates; one that any rank
    // cannot load is skipped by all, so that no two ranks resume from different checkpoints.
    if (ctx) {
      double unusable = ctx->sum({loaded ? 0.0 : 1.0})[0];
      if (unusable > 0 && loaded) {
        std::fprintf(stderr, "gradflow: checkpoint %s is unusable on %.0f other rank(s); trying the previous one\n",
                     path.c_str(), unusable);
        continue;
      }
    }
    if (loaded) return apply(*loaded);
  }
  return std::nullopt;
}

}  // namespace gradflow
