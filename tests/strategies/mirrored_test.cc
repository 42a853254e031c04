// MirroredStrategy: N replicas on threads of this process train as one replica with the global batch
// (fit on tensors and on a Dataset, uneven last batches, SyncBatchNormalization's global statistics),
// evaluate reports the same, and dropout draws the same masks on every run whatever the threads' timing.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/checkpoint/checkpoint.h"

#include "strategies/mirrored.h"
#include "tests/strategies/replica_checks.h"

namespace gradflow::strategies {
namespace {

using testing::max_relative_difference;

Sequential make_model(bool sync_bn = false, bool plain_bn = false, double dropout = 0) {
  std::vector<Layer> layers{Dense(16)};
  if (sync_bn) layers.push_back(SyncBatchNormalization({.momentum = 0.8}));
  if (plain_bn) layers.push_back(BatchNormalization({.momentum = 0.8}));
  layers.push_back(Activation("relu"));
  if (dropout > 0) layers.push_back(Dropout(dropout));
  layers.push_back(Dense(4, {.activation = "softmax"}));
  Sequential model(layers);
  model.compile(std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 0.3}),
                "sparse_categorical_crossentropy", {"accuracy"});
  return model;
}

std::pair<Tensor, Tensor> data(int64_t n) {
  return {random_uniform({n, 8}, -1, 1, kF32, kCPU, 71), random_uniform({n}, 0, 4, kF32, kCPU, 72).to(kI64)};
}

TEST(Mirrored, FitAndEvaluateMatchOneReplicaWithTheGlobalBatch) {
  for (int replicas : {2, 3}) {
    auto [x, y] = data(8 * replicas * 3 + 5);  // a short last step, some replicas without rows
    set_seed(3);
    Sequential mirrored = make_model();
    MirroredStrategy strategy(replicas);
    Logs eval;
    {
      auto scope = strategy.scope();
      mirrored.fit(x, y, {.epochs = 2, .batch_size = 8, .shuffle = false, .verbose = 0});
      eval = mirrored.evaluate(x, y);
    }
    set_seed(3);
    Sequential single = make_model();
    single.fit(x, y, {.epochs = 2, .batch_size = 8 * replicas, .shuffle = false, .verbose = 0});
    EXPECT_LT(max_relative_difference(mirrored.variables(), single.variables()), 1e-5) << replicas << " replicas";
    Logs expected = single.evaluate(x, y);
    EXPECT_NEAR(eval["loss"], expected["loss"], 1e-5);
    EXPECT_NEAR(eval["accuracy"], expected["accuracy"], 1e-9);
  }
}

TEST(Mirrored, FitOnADatasetTakesOneBatchPerReplica) {
  auto [x, y] = data(70);
  set_seed(4);
  Sequential mirrored = make_model();
  MirroredStrategy strategy(2);
  {
    auto scope = strategy.scope();
    mirrored.fit(Dataset::from_tensor_slices({x, y}).batch(8), {.epochs = 2, .verbose = 0});
  }
  set_seed(4);
  Sequential single = make_model();
  single.fit(Dataset::from_tensor_slices({x, y}).batch(16), {.epochs = 2, .verbose = 0});
  EXPECT_LT(max_relative_difference(mirrored.variables(), single.variables()), 1e-5);
}

TEST(Mirrored, SyncBatchNormalizationUsesTheGlobalBatch) {
  // Equal parts: to rounding. A last step of 3 rows split [2, 1]: its statistics of 3 rows magnify the
  // different order of the sums (about 4e-4 here), so that case gets a looser bound.
  for (auto [n, tolerance] : {std::pair{int64_t{2 * 8 * 4}, 1e-4}, std::pair{int64_t{2 * 8 * 4 + 3}, 1e-3}}) {
    auto [x, y] = data(n);
    set_seed(5);
    Sequential mirrored = make_model(/*sync_bn=*/true);
    MirroredStrategy strategy(2);
    {
      auto scope = strategy.scope();
      mirrored.fit(x, y, {.epochs = 2, .batch_size = 8, .shuffle = false, .verbose = 0});
    }
    set_seed(5);
    Sequential single = make_model(/*sync_bn=*/false, /*plain_bn=*/true);
    single.fit(x, y, {.epochs = 2, .batch_size = 16, .shuffle = false, .verbose = 0});
    EXPECT_LT(max_relative_difference(mirrored.variables(), single.variables()), tolerance)
        << n << " rows: weights and moving statistics";
  }
}

TEST(Mirrored, DropoutIsTheSameOnEveryRun) {
  auto [x, y] = data(96);
  std::vector<std::vector<float>> runs;
  for (int run = 0; run < 2; ++run) {
    set_seed(6);
    Sequential model = make_model(false, /*plain_bn=*/true, /*dropout=*/0.3);
    MirroredStrategy strategy(3);
    auto scope = strategy.scope();
    model.fit(x, y, {.epochs = 2, .batch_size = 8, .verbose = 0});
    runs.push_back(model.variables()[0].value_unwatched().reshape({-1}).to_vector<float>());
  }
  EXPECT_EQ(runs[0], runs[1]);
}

// A crash after the `after`-th batch of the job (BackupAndRestore, listed first, has saved by then).
class CrashAfterBatch : public Callback {
 public:
  explicit CrashAfterBatch(int64_t after) : after_(after) {}
  void on_train_batch_end(int64_t, const Logs&) override {
    if (++seen_ == after_) throw std::runtime_error("simulated crash");
  }

 private:
  int64_t after_, seen_ = 0;
};

// One process holds every replica's state: its checkpoints are whole (model.safetensors), and a resumed
// mirrored fit continues bitwise, dropout included.
TEST(Mirrored, CheckpointsAreWholeAndResumeBitwise) {
  std::string dir = (std::filesystem::temp_directory_path() / "gradflow_mirrored_backup").string();
  std::filesystem::remove_all(dir);
  auto [x, y] = data(80);  // 5 global batches of 2 x 8 an epoch
  auto train = [&](std::vector<CallbackPtr> callbacks, uint64_t seed) {
    set_seed(seed);
    reset_layer_names();
    Sequential model = make_model(false, false, /*dropout=*/0.3);
    MirroredStrategy strategy(2);
    auto scope = strategy.scope();
    model.fit(x, y, {.epochs = 3, .batch_size = 8, .callbacks = callbacks, .verbose = 0});
    return model;
  };
  Sequential uninterrupted = train({}, 5);
  EXPECT_THROW(train({BackupAndRestore(dir, {.save_freq = "3"}), std::make_shared<CrashAfterBatch>(8)}, 5),
               std::runtime_error);
  EXPECT_TRUE(std::filesystem::exists(dir + "/ckpt-6/model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/ckpt-6/optimizer.safetensors"));
  std::ifstream meta(dir + "/ckpt-6/meta.json");
  std::string text((std::istreambuf_iterator<char>(meta)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"strategy\": \"MirroredStrategy\""), std::string::npos) << text;
  Sequential resumed = train({BackupAndRestore(dir, {.save_freq = "3"})}, 999);
  EXPECT_EQ(testing::weights(resumed), testing::weights(uninterrupted));
  std::filesystem::remove_all(dir);
}

TEST(Mirrored, OneReplicaAtLeast) { EXPECT_THROW(MirroredStrategy(0), ValueError); }

}  // namespace
}  // namespace gradflow::strategies
