// One rank of the data-parallel BackupAndRestore resume test over a Dataset (started by mpirun through
// run_ranks.sh). Each replica reads its shard of a reshuffling pipeline; a fit that crashes (an exception
// from a callback, on every rank at the same batch) is resumed by a fresh model and pipeline, as a
// restarted job would, and must end bitwise at the uninterrupted run's weights:
//   mid-epoch   save_freq "3", 5 batches per replica and epoch, crash after batch 7: ckpt-6 resumes at
//               epoch 1, step 1, from every replica's own iterator position (data_iterator_replica_<r>);
//   epoch end   save_freq "epoch", crash after epoch 1: epoch 2 must reshuffle as the uninterrupted
//               run's third pass did, which needs each replica's pass count from the checkpoint;
//   fit(x, y)   save_freq "3" on tensors: the resumed epochs shuffle from the saved run's shared seed
//               (shuffle_seed in meta.json), not from the restarted process's generator.
// Prints "rank R: ... ok" lines; exits 0 when everything matched, 1 otherwise (every rank: the failures
// are summed over the ranks).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/checkpoint/checkpoint.h"
#include "strategies/data_parallel.h"
#include "tests/strategies/replica_checks.h"
#include "tests/core/crash_callbacks.h"

namespace gradflow {
namespace {

using testing::check;


using testing::weights;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct Scenario {
  const char* name;
  const char* save_freq;
  CallbackPtr crash;
  const char* checkpoint;  // the newest one the crash leaves
  std::vector<int> resumed_epochs;
  bool tensors = false;  // fit(x, y) with shuffle (its seed must come from the checkpoint), not a Dataset
};

void run_scenario(strategies::Strategy& strategy, const std::string& dir, const Scenario& s) {
  int rank = strategy.replica_id(), replicas = strategy.num_replicas_in_sync();
  int64_t n = 8 * replicas * 5;  // per-replica batches of 8, 5 per replica and epoch
  Tensor x = random_uniform({n, 8}, -1, 1, kF32, kCPU, 11);
  Tensor y = random_uniform({n}, 0, 4, kF32, kCPU, 12).to(kI64);
  // Each run is a process of its own here: a fresh pipeline, whose pass counter starts at 0.
  auto pipeline = [&] { return Dataset::from_tensor_slices({x, y}).shuffle(n, 5).batch(8); };
  auto fit = [&](Sequential& model, std::vector<CallbackPtr> callbacks) {
    FitOptions options{.epochs = 3, .callbacks = std::move(callbacks), .verbose = 0};
    if (!s.tensors) return model.fit(pipeline(), options);
    options.batch_size = 8;
    return model.fit(x, y, options);
  };
  auto scope = strategy.scope();
  set_seed(7);
  Sequential uninterrupted = testing::dropout_classifier();
  fit(uninterrupted, {});

  set_seed(7);
  Sequential crashing = testing::dropout_classifier();
  bool crashed = false;
  try {
    fit(crashing, {BackupAndRestore(dir, {.save_freq = s.save_freq}), s.crash});
  } catch (const std::runtime_error& e) {
    crashed = std::string(e.what()) == "simulated crash";
  }
  check(crashed, rank, str_cat(s.name, ": the first fit crashed"));
  std::string meta = read_text(str_cat(dir, "/", s.checkpoint, "/meta.json"));
  for (int r = 0; r < replicas && !s.tensors; ++r) {
    check(meta.find(str_cat("\"data_iterator_replica_", r, "\"")) != std::string::npos, rank,
          str_cat(s.name, ": ", s.checkpoint, "/meta.json holds replica ", r, "'s data position"));
  }
  set_seed(999);  // the restarted job
  Sequential resumed = testing::dropout_classifier();
  History h = fit(resumed, {BackupAndRestore(dir, {.save_freq = s.save_freq})});
  check(h.epoch == s.resumed_epochs, rank, str_cat(s.name, ": resumed at epoch ", s.resumed_epochs.front()));
  check(weights(resumed) == weights(uninterrupted), rank,
        str_cat(s.name, ": the resumed run ends bitwise at the uninterrupted run's weights"));
}

}  // namespace
}  // namespace gradflow

int main(int argc, char** argv) {
  using namespace gradflow;
  std::string base = testing::store_dir_argument(argc, argv, "backup_resume_rank");
  if (base.empty()) return 2;
  int failures = 1;
  try {
    set_num_threads(1);
    auto strategy = strategies::DataParallelStrategy::from_environment({.timeout = std::chrono::seconds(120)});
    if (strategy->num_replicas_in_sync() != 2) {
      std::fprintf(stderr, "backup_resume_rank: needs 2 ranks, got %d\n", strategy->num_replicas_in_sync());
      return 1;
    }
    run_scenario(*strategy, base + "/mid_epoch",
                 {"mid-epoch", "3", std::make_shared<testing::CrashAfterBatch>(7), "ckpt-6", {1, 2}});
    run_scenario(*strategy, base + "/epoch_end",
                 {"epoch end", "epoch", std::make_shared<testing::CrashAfterEpoch>(1), "ckpt-10", {2}});
    run_scenario(*strategy, base + "/tensors",
                 {"fit(x, y) mid-epoch", "3", std::make_shared<testing::CrashAfterBatch>(7), "ckpt-6", {1, 2}, true});
    // Every rank fails when any did (reduce_gradients averages: nonzero when any rank had a failure).
    Tensor mine = from_vector<float>(std::vector<float>{static_cast<float>(testing::failures())});
    failures = strategy->reduce_gradients({mine}).at(0).item() > 0 ? 1 : 0;
    std::printf("rank %d of %d: %s\n", strategy->replica_id(), strategy->num_replicas_in_sync(),
                failures == 0 ? "all ok" : "FAILURES");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "backup_resume_rank: %s\n", e.what());
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
