// One rank of the ModelCheckpoint test under data-parallel fit (started by mpirun through run_ranks.sh):
// every rank runs the callback, each pointed at its own directory <store-dir>/rank<R>; only replica 0's
// directory may exist afterwards, holding one checkpoint per epoch (numbered by the optimizer's
// iterations) plus the best ones, and every rank restoring replica 0's newest checkpoint gets bitwise
// the weights it trained. Prints "rank R: ... ok" lines; exits 0 when everything matched, 1 otherwise.
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/checkpoint/checkpoint.h"
#include "strategies/data_parallel.h"
#include "tests/strategies/replica_checks.h"

namespace gradflow {
namespace {

using testing::check;

Sequential make_model() {
  reset_layer_names();
  Sequential m({Dense(16, {.activation = "relu", .input_shape = Shape{8}}), Dense(4, {.activation = "softmax"})});
  m.compile("adam", "sparse_categorical_crossentropy", {"accuracy"});
  return m;
}

using testing::weights;

void run(strategies::Strategy& strategy, const std::string& base) {
  int rank = strategy.replica_id(), replicas = strategy.num_replicas_in_sync();
  std::string mine = str_cat(base, "/rank", rank), best = str_cat(base, "/best", rank);
  int64_t n = 8 * replicas * 4;  // 4 steps per epoch, per-replica batch 8
  Tensor x = random_uniform({n, 8}, -1, 1, kF32, kCPU, 11);
  Tensor y = random_uniform({n}, 0, 4, kF32, kCPU, 12).to(kI64);
  set_seed(7);
  Sequential model = make_model();
  {
    auto scope = strategy.scope();
    model.fit(x, y, {.epochs = 3, .batch_size = 8, .validation_data = ValidationData{x, y},
                     .callbacks = {ModelCheckpoint(mine, {.max_to_keep = 0}),
                                   ModelCheckpoint(best, {.save_best_only = true, .max_to_keep = 0})},
                     .verbose = 0});
  }
  strategy.reduce_gradients({zeros({1})});  // a barrier: replica 0 has committed its last checkpoint
  namespace fs = std::filesystem;
  if (rank != 0) {
    check(!fs::exists(mine) && !fs::exists(best), rank, "no checkpoint directory written by a replica other than 0");
  } else {
    Sequential reader = make_model();
    std::vector<std::string> all = CheckpointManager(mine, reader, {.max_to_keep = 0}).checkpoints();
    check(all == std::vector<std::string>{mine + "/ckpt-4", mine + "/ckpt-8", mine + "/ckpt-12"}, rank,
          str_cat("replica 0 saved one checkpoint per epoch (", all.size(), " found)"));
    check(!CheckpointManager(best, reader, {.max_to_keep = 0}).checkpoints().empty(), rank,
          "replica 0 saved the best val_loss at least once");
  }
  Sequential restored = make_model();
  std::optional<CheckpointInfo> info = CheckpointManager(base + "/rank0", restored).restore_latest();
  check(info && info->step == 12 && info->epoch == 2, rank, "replica 0's newest checkpoint is epoch 2, step 12");
  check(weights(restored) == weights(model), rank, "it holds bitwise the weights this replica trained");
}

}  // namespace
}  // namespace gradflow

int main(int argc, char** argv) {
  using namespace gradflow;
  std::string base = testing::store_dir_argument(argc, argv, "model_checkpoint_rank");
  if (base.empty()) return 2;
  try {
    set_num_threads(1);
    auto strategy = strategies::DataParallelStrategy::from_environment({.timeout = std::chrono::seconds(120)});
    if (strategy->num_replicas_in_sync() < 2) {
      std::fprintf(stderr, "model_checkpoint_rank: needs at least 2 ranks, got %d\n", strategy->num_replicas_in_sync());
      return 1;
    }
    run(*strategy, base);
    std::printf("rank %d of %d: %s\n", strategy->replica_id(), strategy->num_replicas_in_sync(),
                testing::failures() == 0 ? "all ok" : "FAILURES");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "model_checkpoint_rank: %s\n", e.what());
    return 1;
  }
  return testing::failures() == 0 ? 0 : 1;
}
