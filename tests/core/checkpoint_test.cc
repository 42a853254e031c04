// CheckpointManager: exact resume (weights, optimizer slots and iterations, RNG for dropout), the atomic
// layout, pruning, and damaged checkpoints falling back to the previous good one.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/checkpoint/checkpoint.h"
#include "core/gradflow.h"
#include "core/io/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/core/checkpoint_fixture.h"
#include "tests/core/crash_callbacks.h"

namespace gradflow {
using testing::CrashAfterBatch;
using testing::CrashAfterEpoch;
}  // namespace gradflow

namespace gradflow {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public testing::CheckpointFixture {
 protected:
  Sequential fresh_model() {
    reset_layer_names();  // the same variable names every time, as in a restarted process
    Sequential m({Dense(8, {.activation = "relu", .input_shape = Shape{6}}), Dropout(0.3),
                  Dense(3, {.activation = "softmax"})});
    m.compile("adam", "sparse_categorical_crossentropy");
    return m;
  }
};

TEST_F(CheckpointTest, ResumingGivesBitwiseTheSameWeightsAsNotStopping) {
  set_seed(5);
  Sequential uninterrupted = fresh_model();
  train(uninterrupted, 7);
  CheckpointManager ckpt(dir_, uninterrupted);
  std::string path = ckpt.save(7, 1, {{"note", "mid-run"}});
  EXPECT_EQ(path, dir_ + "/ckpt-7");
  train(uninterrupted, 9);

  set_seed(123);  // a restarted process starts elsewhere; the checkpoint brings the RNG state back
  Sequential resumed = fresh_model();
  CheckpointManager again(dir_, resumed);
  std::optional<CheckpointInfo> info = again.restore_latest();
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->step, 7);
  EXPECT_EQ(info->epoch, 1);
  EXPECT_EQ(info->extra.at("note"), "mid-run");
  EXPECT_EQ(resumed.impl().training->optimizer->iterations(), 7);
  train(resumed, 9);
  EXPECT_EQ(weights(resumed), weights(uninterrupted));
}

TEST_F(CheckpointTest, MetaJsonRecordsStrategyDtypePolicyAndOptimizerConfig) {
  Sequential m = fresh_model();
  train(m, 2);
  std::string path = CheckpointManager(dir_, m).save(2);
  std::ifstream in(path + "/meta.json");
  nlohmann::json meta = nlohmann::json::parse(in);
  EXPECT_EQ(meta["strategy"], "default");
  EXPECT_EQ(meta["dtype_policy"], "f32");
  EXPECT_EQ(meta["world_size"], 1);
  EXPECT_EQ(meta["optimizer"]["name"], "adam");
  EXPECT_EQ(meta["optimizer"]["iterations"], 2);
  EXPECT_DOUBLE_EQ(meta["optimizer"]["config"]["beta_1"].get<double>(), 0.9);
  EXPECT_DOUBLE_EQ(meta["optimizer"]["config"]["learning_rate"].get<double>(), 0.001);
}

TEST_F(CheckpointTest, LayoutLatestAndPruning) {
  Sequential m = fresh_model();
  train(m, 1);
  CheckpointManager ckpt(dir_, m, {.max_to_keep = 2});
  for (int step : {10, 20, 30, 40}) ckpt.save(step);
  EXPECT_EQ(ckpt.checkpoints(), (std::vector<std::string>{dir_ + "/ckpt-30", dir_ + "/ckpt-40"}));
  std::ifstream latest(dir_ + "/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "ckpt-40");
  for (const char* file : {"meta.json", "model.safetensors", "optimizer.safetensors"}) {
    EXPECT_TRUE(fs::exists(dir_ + "/ckpt-40/" + file)) << file;
  }
  absl::StatusOr<SafetensorsFile> model = read_safetensors(dir_ + "/ckpt-40/model.safetensors");
  ASSERT_TRUE(model.ok());
  EXPECT_TRUE(model->tensors.count("dense/kernel"));
  absl::StatusOr<SafetensorsFile> opt = read_safetensors(dir_ + "/ckpt-40/optimizer.safetensors");
  ASSERT_TRUE(opt.ok());
  EXPECT_TRUE(opt->tensors.count("dense/kernel/adam_m")) << "slots are named <variable>/<slot>";
  EXPECT_TRUE(opt->tensors.count("iteration"));
}

TEST_F(CheckpointTest, DamagedNewestFallsBackToThePreviousGoodOne) {
  Sequential m = fresh_model();
  train(m, 2);
  CheckpointManager ckpt(dir_, m, {.max_to_keep = 0});
  ckpt.save(1);
  std::vector<std::vector<float>> at_one = weights(m);
  train(m, 2);
  ckpt.save(2);
  ckpt.save(3);
  {  // step 3: one flipped byte in the data
    std::fstream f(dir_ + "/ckpt-3/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  fs::resize_file(dir_ + "/ckpt-2/optimizer.safetensors", 10);  // step 2: truncated
  fs::create_directories(dir_ + "/.ckpt-4.tmp-999");              // an interrupted save: ignored
  Sequential restored = fresh_model();
  train(restored, 1);
  CheckpointManager again(dir_, restored);
  EXPECT_THROW(again.restore(dir_ + "/ckpt-3"), ValueError);
  ::testing::internal::CaptureStderr();
  std::optional<CheckpointInfo> info = again.restore_latest();
  std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->step, 1);
  EXPECT_NE(log.find("ckpt-3/model.safetensors: sha256 does not match"), std::string::npos) << log;
  EXPECT_NE(log.find("ckpt-2/optimizer.safetensors: 10 bytes"), std::string::npos) << log;
  EXPECT_EQ(weights(restored), at_one);
}

TEST_F(CheckpointTest, AModelWithOtherVariablesIsRefusedUntouched) {
  Sequential m = fresh_model();
  train(m, 1);
  CheckpointManager(dir_, m).save(1);
  reset_layer_names();
  Sequential other({Dense(9, {.input_shape = Shape{6}}), Dense(3)});
  other.compile("adam", "mse");
  std::vector<float> before = other.variables()[0].value_unwatched().reshape({-1}).to_vector<float>();
  CheckpointManager ckpt(dir_, other);
  try {
    ckpt.restore(dir_ + "/ckpt-1");
    ADD_FAILURE() << "restored into a model of other shapes";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("\"dense/kernel\" is [6,8] f32 but the model's is [6,9] f32"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(other.variables()[0].value_unwatched().reshape({-1}).to_vector<float>(), before);
  EXPECT_FALSE(CheckpointManager(dir_ + "/empty", other).restore_latest().has_value());
}

}  // namespace
}  // namespace gradflow

namespace gradflow {
namespace {

TEST_F(CheckpointTest, BackupAndRestoreResumesFitBitwiseAfterACrash) {
  auto model_without_input_shape = [] {
    reset_layer_names();
    Sequential m({Dense(8, {.activation = "relu"}), Dropout(0.3), Dense(3, {.activation = "softmax"})});
    m.compile("adam", "sparse_categorical_crossentropy");
    return m;
  };
  set_seed(11);
  Sequential uninterrupted = model_without_input_shape();
  uninterrupted.fit(x_, y_, {.epochs = 4, .batch_size = 16, .verbose = 0});

  set_seed(11);
  Sequential crashing = model_without_input_shape();
  EXPECT_THROW(crashing.fit(x_, y_, {.epochs = 4, .batch_size = 16,
                                     .callbacks = {BackupAndRestore(dir_), std::make_shared<CrashAfterEpoch>(1)},
                                     .verbose = 0}),
               std::runtime_error);
  set_seed(999);  // the restarted process
  Sequential resumed = model_without_input_shape();
  History h = resumed.fit(x_, y_, {.epochs = 4, .batch_size = 16, .callbacks = {BackupAndRestore(dir_)}, .verbose = 0});
  EXPECT_EQ(h.epoch, (std::vector<int>{2, 3})) << "epochs 0 and 1 were done before the crash";
  EXPECT_EQ(weights(resumed), weights(uninterrupted));
}

}  // namespace
}  // namespace gradflow

namespace gradflow {
namespace {

Sequential unbuilt_model() {
  reset_layer_names();
  Sequential m({Dense(8, {.activation = "relu"}), Dropout(0.3), Dense(3, {.activation = "softmax"})});
  m.compile("adam", "sparse_categorical_crossentropy");
  return m;
}

// 64 rows in batches of 16: 4 batches an epoch. Saving every 3 batches and crashing after batch 7 leaves
// ckpt-6, taken after batch 2 of epoch 1: the resumed fit must replay epoch 1's shuffle, skip its first
// two batches, and continue with the generator (dropout) where it was.
TEST_F(CheckpointTest, BackupAndRestoreEveryNBatchesResumesMidEpochBitwise) {
  set_seed(11);
  Sequential uninterrupted = unbuilt_model();
  uninterrupted.fit(x_, y_, {.epochs = 3, .batch_size = 16, .verbose = 0});

  set_seed(11);
  Sequential crashing = unbuilt_model();
  EXPECT_THROW(crashing.fit(x_, y_, {.epochs = 3, .batch_size = 16,
                                     .callbacks = {BackupAndRestore(dir_, {.save_freq = "3"}),
                                                   std::make_shared<CrashAfterBatch>(7)},
                                     .verbose = 0}),
               std::runtime_error);
  std::ifstream latest(dir_ + "/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "ckpt-6");
  set_seed(999);  // the restarted process
  Sequential resumed = unbuilt_model();
  History h = resumed.fit(x_, y_, {.epochs = 3, .batch_size = 16,
                                   .callbacks = {BackupAndRestore(dir_, {.save_freq = "3"})}, .verbose = 0});
  EXPECT_EQ(h.epoch, (std::vector<int>{1, 2})) << "epoch 1 resumes at its third batch";
  EXPECT_EQ(weights(resumed), weights(uninterrupted));
  EXPECT_THROW(BackupAndRestore(dir_, {.save_freq = "0"}), ValueError);
}

// The same over a reshuffling Dataset: the checkpoint carries the iterator's position in meta.json.
TEST_F(CheckpointTest, BackupAndRestoreResumesADatasetMidEpochFromItsIteratorState) {
  // Each run is a process of its own, with a fresh pipeline (its pass counter starts at 0).
  auto pipeline = [&] { return Dataset::from_tensor_slices({x_, y_}).shuffle(64, 5).batch(16); };
  set_seed(11);
  Sequential uninterrupted = unbuilt_model();
  uninterrupted.fit(pipeline(), {.epochs = 3, .verbose = 0});

  set_seed(11);
  Sequential crashing = unbuilt_model();
  EXPECT_THROW(crashing.fit(pipeline(), {.epochs = 3,
                                 .callbacks = {BackupAndRestore(dir_, {.save_freq = "3"}),
                                               std::make_shared<CrashAfterBatch>(7)},
                                 .verbose = 0}),
               std::runtime_error);
  std::ifstream meta(dir_ + "/ckpt-6/meta.json");
  std::string text((std::istreambuf_iterator<char>(meta)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"data_iterator\""), std::string::npos);
  set_seed(999);
  Sequential resumed = unbuilt_model();
  History h = resumed.fit(pipeline(), {.epochs = 3, .callbacks = {BackupAndRestore(dir_, {.save_freq = "3"})}, .verbose = 0});
  EXPECT_EQ(h.epoch, (std::vector<int>{1, 2}));
  EXPECT_EQ(weights(resumed), weights(uninterrupted));
}

std::string extra_of(const std::string& checkpoint, const std::string& key) {
  std::ifstream meta(checkpoint + "/meta.json");
  std::string text((std::istreambuf_iterator<char>(meta)), std::istreambuf_iterator<char>());
  std::string quoted = "\"" + key + "\": \"";
  size_t at = text.find(quoted);
  if (at == std::string::npos) return "";
  at += quoted.size();
  return text.substr(at, text.find('"', at) - at);
}

// Gradient accumulation in groups of 3 over 8 batches an epoch (groups [0,3) [3,6) [6,8)), saving every
// 2 batches: each save falls inside a group and waits for its end. A crash after batch 13 of the job
// leaves ckpt-11 (epoch 1 after its group [0,3)): the requests at 10 and 12 wait for 11 and 14. A crash
// after batch 9 leaves ckpt-8, deferred from the epoch's short last group to its end. Either resume
// must be bitwise the uninterrupted run: a checkpoint inside a group would have lost its gradients.
TEST_F(CheckpointTest, BackupAndRestoreWithGradientAccumulationSavesOnlyBetweenGroups) {
  const FitOptions base{.epochs = 3, .batch_size = 8, .verbose = 0, .gradient_accumulation_steps = 3};
  set_seed(11);
  Sequential uninterrupted = unbuilt_model();
  uninterrupted.fit(x_, y_, base);
  struct Crash {
    int64_t after;
    const char* latest;
    const char* epoch_step;
  };
  for (Crash crash : {Crash{13, "ckpt-11", "3"}, Crash{9, "ckpt-8", "8"}}) {
    SCOPED_TRACE(str_cat("crash after batch ", crash.after));
    fs::remove_all(dir_);
    FitOptions crashing_options = base;
    crashing_options.callbacks = {BackupAndRestore(dir_, {.save_freq = "2"}), std::make_shared<CrashAfterBatch>(crash.after)};
    set_seed(11);
    Sequential crashing = unbuilt_model();
    EXPECT_THROW(crashing.fit(x_, y_, crashing_options), std::runtime_error);
    std::ifstream latest(dir_ + "/latest");
    std::string name;
    latest >> name;
    EXPECT_EQ(name, crash.latest);
    EXPECT_EQ(extra_of(dir_ + "/" + name, "epoch_step"), crash.epoch_step);
    set_seed(999);
    Sequential resumed = unbuilt_model();
    FitOptions resumed_options = base;
    resumed_options.callbacks = {BackupAndRestore(dir_, {.save_freq = "2"})};
    resumed.fit(x_, y_, resumed_options);
    EXPECT_EQ(weights(resumed), weights(uninterrupted));
  }
}

}  // namespace
}  // namespace gradflow
