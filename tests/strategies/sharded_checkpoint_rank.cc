// One rank of the sharded-checkpoint test (tests/strategies/sharded_checkpoint_test.sh runs its phases
// under mpirun with different rank counts, all on one --shared directory):
//   --phase save --step S        train one data-parallel epoch, give replica r the generator seed 100 + r,
//                                save checkpoint S (sharded when N > 1); rank 0 keeps the reference state
//   --phase restore --expect S --saved-replicas N [--then-save S2]
//                                restore_latest (collective): step S, the reference weights and optimizer
//                                slots bitwise, replica r's generator = saved state r (r < N) or derived
//   ... --mirrored R             the restore phase in one process under MirroredStrategy(R), which
//                                restores any shard count and saves whole checkpoints
//   --phase fail --step S        rank 1's part of save S fails: every rank must throw, naming rank 1,
//                                and nothing may be committed
//   --phase damage --step S --expect E
//                                save S, flip a byte of model-1-of-N, restore_latest falls back to E
//   --phase async --step S       an async sharded save S while training goes on (its commit on a
//                                background thread), restored bitwise; a failing one fails every wait()
// Prints "rank R: <check> ok|FAILED" lines and "rank R of N: all ok" at the end; exits 1 on any failure.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "core/checkpoint/checkpoint.h"
#include "core/io/safetensors.h"
#include "nlohmann/json.hpp"
#include "strategies/data_parallel.h"
#include "strategies/mirrored.h"
#include "tests/strategies/replica_checks.h"

namespace gradflow {
namespace {

namespace fs = std::filesystem;
using testing::check;


// The model's variables and the optimizer's slots, by name.
std::vector<std::pair<std::string, Tensor>> state_of(Sequential& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const Variable& v : m.variables()) out.emplace_back(v.name(), v.value_unwatched());
  m.impl().training->optimizer->build(m.trainable_variables());
  for (const Variable& v : m.impl().training->optimizer->variables()) out.emplace_back("opt/" + v.name(), v.value_unwatched());
  return out;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = a.contiguous().to(kCPU), cb = b.contiguous().to(kCPU);
  size_t bytes = static_cast<size_t>(ca.numel()) * dtype_size(ca.dtype());
  return std::memcmp(ca.raw_data(), cb.raw_data(), bytes) == 0;
}

// What the save phases train on: 64 examples of 8 features in 4 classes.
std::pair<Tensor, Tensor> training_data() {
  return {random_uniform({64, 8}, -1, 1, kF32, kCPU, 11), random_uniform({64}, 0, 4, kF32, kCPU, 12).to(kI64)};
}

struct Args {
  std::string phase, shared;
  int64_t step = 0, expect = 0, then_save = 0;
  int saved_replicas = 0;
  int mirrored = 0;  // > 0: this process runs a MirroredStrategy of that many replicas instead
};

void save_phase(strategies::Strategy& strategy, const Args& a, int rank, int n) {
  Sequential model = testing::dropout_classifier();
  auto [x, y] = training_data();
  auto scope = strategy.scope();
  model.fit(x, y, {.epochs = 1, .batch_size = 8, .verbose = 0});
  set_seed(100 + static_cast<uint64_t>(rank));
  std::string dir = a.shared + "/ckpt";
  std::string path = CheckpointManager(dir, model).save(a.step);
  check(path == str_cat(dir, "/ckpt-", a.step), rank, "save returns the committed path on every rank");
  if (rank != 0) return;
  check(write_safetensors(a.shared + "/reference.safetensors", state_of(model)).ok(), rank, "reference written");
  nlohmann::json meta = nlohmann::json::parse(std::ifstream(path + "/meta.json"));
  check(meta["world_size"] == n && meta["rng_replicas"].size() == static_cast<size_t>(n), rank,
        str_cat("meta.json: world_size ", n, " and one generator per replica"));
  check(meta["strategy"] == "MultiWorkerMirroredStrategy", rank, "meta.json: the strategy");
  bool seeds = true;
  for (int r = 0; r < n; ++r) seeds &= meta["rng_replicas"][r]["seed"] == 100 + r;
  check(seeds, rank, "rng_replicas[r] is replica r's generator");
  std::map<std::string, int> owners;  // variable -> how many shards hold it
  size_t listed = meta["files"].size();
  for (int r = 0; r < n; ++r) {
    for (const char* kind : {"model", "optimizer"}) {
      std::string file = str_cat(kind, "-", r, "-of-", n, ".safetensors");
      check(meta["files"].contains(file) && fs::exists(path + "/" + file), rank, file + " written and listed");
      absl::StatusOr<SafetensorsFile> f = read_safetensors(path + "/" + file);
      if (f.ok()) for (const auto& [name, t] : f->tensors) ++owners[str_cat(kind, "/", name)];
    }
  }
  check(!fs::exists(path + "/model.safetensors") && listed == static_cast<size_t>(2 * n), rank,
        str_cat("no unsharded file; ", listed, " files listed"));
  bool once = owners.size() == state_of(model).size();
  for (const auto& [name, count] : owners) once &= count == 1;
  check(once, rank, str_cat("each of ", owners.size(), " variables and slots is in exactly one shard"));
}

void restore_phase(strategies::Strategy& strategy, const Args& a, int rank, int n) {
  set_seed(999);  // a fresh process: the checkpoint must bring the generator back
  Sequential model = testing::dropout_classifier();
  auto scope = strategy.scope();
  CheckpointManager ckpt(a.shared + "/ckpt", model);
  std::optional<CheckpointInfo> info = ckpt.restore_latest();
  check(info && info->step == a.expect, rank, str_cat("restore_latest found step ", a.expect));
  absl::StatusOr<SafetensorsFile> ref = read_safetensors(a.shared + "/reference.safetensors");
  bool same = ref.ok();
  for (const auto& [name, t] : state_of(model)) same = same && ref->tensors.count(name) && bitwise_equal(t, ref->tensors.at(name));
  check(same, rank, str_cat("weights and optimizer slots bitwise the reference (", a.saved_replicas, " -> ", n, " ranks)"));
  GeneratorState g = global_generator().state();
  if (rank < a.saved_replicas) {
    check(g.seed == 100 + static_cast<uint64_t>(rank), rank, str_cat("generator: saved replica ", rank, "'s state"));
  } else {
    bool distinct = g.seed >= static_cast<uint64_t>(100 + a.saved_replicas) || g.seed < 100;
    check(distinct, rank, str_cat("generator: derived for replica ", rank, " of ", n, " (seed ", g.seed, ")"));
  }
  if (a.then_save == 0) return;
  std::string saved = ckpt.save(a.then_save);
  if (n != 1) return;
  // One replica under a ReplicaContext writes today's unsharded format, as a plain process does.
  scope.reset();
  std::string plain = CheckpointManager(a.shared + "/ckpt", model).save(a.then_save + 1);
  auto files = [](const std::string& path) {
    nlohmann::json meta = nlohmann::json::parse(std::ifstream(path + "/meta.json"));
    std::map<std::string, uint64_t> sizes;
    for (auto& [name, entry] : meta["files"].items()) sizes[name] = entry["bytes"].get<uint64_t>();
    return std::make_pair(sizes, meta.contains("shards"));
  };
  check(files(saved) == files(plain) && files(saved).first.count("model.safetensors"), rank,
        "one replica saves model.safetensors and optimizer.safetensors, as a single process does");
}

void fail_phase(strategies::Strategy& strategy, const Args& a, int rank, int) {
  Sequential model = testing::dropout_classifier();
  auto scope = strategy.scope();
  std::string dir = a.shared + "/ckpt";
  CheckpointManager ckpt(dir, model, {.before_commit = [rank](int64_t) {
                                        if (rank == 1) throw Error("rank 1: simulated disk full");
                                      }});
  std::string before;
  std::ifstream(dir + "/latest") >> before;
  std::string message;
  try {
    ckpt.save(a.step);
  } catch (const Error& e) {
    message = e.what();
  }
  std::printf("rank %d: save failed with: %s\n", rank, message.c_str());
  check(message.find("sharded save failed on rank(s) 1 while writing its shard files") != std::string::npos, rank,
        "every rank's save throws, naming rank 1");
  strategy.reduce_gradients({zeros({1})});  // a barrier: rank 0 has cleaned up
  std::string after;
  std::ifstream(dir + "/latest") >> after;
  check(after == before && !fs::exists(str_cat(dir, "/ckpt-", a.step)), rank, "nothing committed; latest unchanged");
  bool leftovers = false;
  for (const auto& e : fs::directory_iterator(dir)) leftovers |= e.path().filename().string().find(".tmp-") != std::string::npos;
  check(!leftovers, rank, "the temporary directory is removed");
}

void damage_phase(strategies::Strategy& strategy, const Args& a, int rank, int n) {
  Sequential model = testing::dropout_classifier();
  auto scope = strategy.scope();
  std::string dir = a.shared + "/ckpt";
  CheckpointManager ckpt(dir, model, {.max_to_keep = 0});
  ckpt.restore_latest();
  std::string path = ckpt.save(a.step);
  if (rank == 0) {
    std::fstream f(str_cat(path, "/model-1-of-", n, ".safetensors"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  strategy.reduce_gradients({zeros({1})});  // a barrier: the shard is damaged
  std::optional<CheckpointInfo> info = CheckpointManager(dir, model, {.max_to_keep = 0}).restore_latest();
  check(info && info->step == a.expect, rank, str_cat("a damaged shard: every rank falls back to step ", a.expect));
}

// An async sharded save: save() returns once this rank's shard is copied; the commit's barriers run on
// the background thread (through the store) while the training thread goes on with an epoch of its own
// all-reduces. The checkpoint must hold the state at save() and every replica's generator; a failing
// async save must fail every rank's wait(), naming rank 1, and commit nothing.
void async_phase(strategies::Strategy& strategy, const Args& a, int rank, int n) {
  Sequential model = testing::dropout_classifier();
  auto [x, y] = training_data();
  auto scope = strategy.scope();
  model.fit(x, y, {.epochs = 1, .batch_size = 8, .verbose = 0});
  set_seed(100 + static_cast<uint64_t>(rank));
  std::string reference = str_cat(a.shared, "/async-reference-", rank, ".safetensors");
  check(write_safetensors(reference, state_of(model)).ok(), rank, "reference written");
  std::string dir = a.shared + "/async";
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<bool> on_caller{true};
  CheckpointManager ckpt(dir, model, {.async = true, .before_commit = [&](int64_t) {
                                        on_caller = std::this_thread::get_id() == caller;
                                        std::this_thread::sleep_for(std::chrono::milliseconds(rank == 1 ? 300 : 0));
                                      }});
  std::string path = ckpt.save(a.step);
  model.fit(x, y, {.epochs = 1, .batch_size = 8, .verbose = 0});  // collectives while the commit runs
  ckpt.wait();
  check(!on_caller.load(), rank, "the shard is written on a background thread");
  check(fs::exists(path + "/meta.json"), rank, str_cat("wait(): ", path, " is committed"));
  nlohmann::json meta = nlohmann::json::parse(std::ifstream(path + "/meta.json"));
  check(meta["shards"] == n && meta["files"].size() == static_cast<size_t>(2 * n), rank,
        str_cat("meta.json lists the ", 2 * n, " shard files"));
  bool seeds = meta["rng_replicas"].size() == static_cast<size_t>(n);
  for (int r = 0; seeds && r < n; ++r) seeds &= meta["rng_replicas"][r]["seed"] == 100 + r;
  check(seeds, rank, "rng_replicas[r] is replica r's generator at save()");

  set_seed(999);
  Sequential fresh = testing::dropout_classifier();
  fresh.fit(x.slice(0, 0, 8), y.slice(0, 0, 8), {.epochs = 1, .batch_size = 8, .verbose = 0});  // builds it
  CheckpointManager(dir, fresh).restore(path);
  absl::StatusOr<SafetensorsFile> ref = read_safetensors(reference);
  bool same = ref.ok();
  for (const auto& [name, t] : state_of(fresh)) same = same && ref->tensors.count(name) && bitwise_equal(t, ref->tensors.at(name));
  check(same, rank, "the checkpoint holds the weights and slots at save(), not the later ones");
  check(global_generator().state().seed == 100 + static_cast<uint64_t>(rank), rank, "restore: this replica's generator");

  CheckpointManager failing(dir, model, {.async = true, .before_commit = [rank](int64_t) {
                                           if (rank == 1) throw Error("rank 1: simulated disk full");
                                         }});
  failing.save(a.step + 1);  // returns: the failure is the background thread's
  std::string message;
  try {
    failing.wait();
  } catch (const Error& e) {
    message = e.what();
  }
  check(message.find("sharded save failed on rank(s) 1 while writing its shard files") != std::string::npos, rank,
        "a failed async save: every rank's wait() throws, naming rank 1");
  check(!fs::exists(str_cat(dir, "/ckpt-", a.step + 1)), rank, "nothing committed");
}

}  // namespace
}  // namespace gradflow

int main(int argc, char** argv) {
  using namespace gradflow;
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--phase") a.phase = v;
    else if (k == "--shared") a.shared = v;
    else if (k == "--step") a.step = std::stoll(v);
    else if (k == "--expect") a.expect = std::stoll(v);
    else if (k == "--then-save") a.then_save = std::stoll(v);
    else if (k == "--saved-replicas") a.saved_replicas = std::stoi(v);
    else if (k == "--mirrored") a.mirrored = std::stoi(v);
  }
  if (a.phase.empty() || a.shared.empty()) {
    std::fprintf(stderr, "usage: sharded_checkpoint_rank --phase save|restore|fail|damage|async --shared DIR ...\n");
    return 2;
  }
  try {
    set_num_threads(1);
    set_seed(7);
    if (a.mirrored > 0) {  // one process, replicas on threads: restores and saves whole checkpoints
      strategies::MirroredStrategy mirrored(a.mirrored);
      if (a.phase != "restore") throw ValueError("--mirrored goes with --phase restore");
      restore_phase(mirrored, a, 0, a.mirrored);
      std::printf("rank 0 of 1: %s\n", testing::failures() == 0 ? "all ok" : "FAILURES");
      return testing::failures() == 0 ? 0 : 1;
    }
    auto strategy = strategies::DataParallelStrategy::from_environment({.timeout = std::chrono::seconds(60)});
    int rank = strategy->replica_id(), n = strategy->num_replicas_in_sync();
    if (a.phase == "save") save_phase(*strategy, a, rank, n);
    else if (a.phase == "restore") restore_phase(*strategy, a, rank, n);
    else if (a.phase == "fail") fail_phase(*strategy, a, rank, n);
    else if (a.phase == "damage") damage_phase(*strategy, a, rank, n);
    else if (a.phase == "async") async_phase(*strategy, a, rank, n);
    else throw ValueError("unknown --phase " + a.phase);
    std::printf("rank %d of %d: %s\n", rank, n, testing::failures() == 0 ? "all ok" : "FAILURES");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sharded_checkpoint_rank: %s\n", e.what());
    return 1;
  }
  return testing::failures() == 0 ? 0 : 1;
}
