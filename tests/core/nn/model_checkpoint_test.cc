// ModelCheckpoint with fit on a small Sequential model: every epoch, every N batches, save_best_only in
// each mode (checked against the History of the same run), a missing metric, async saves, bad options.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/checkpoint/checkpoint.h"
#include "core/gradflow.h"
#include "tests/core/checkpoint_fixture.h"

namespace gradflow {
namespace {

namespace fs = std::filesystem;

class ModelCheckpointTest : public testing::CheckpointFixture {
 protected:
  void SetUp() override {
    CheckpointFixture::SetUp();
    x_val_ = random_uniform({32, 6}, -1, 1, kF32, kCPU, 3);
    y_val_ = random_uniform({32}, 0, 3, kF32, kCPU, 4).to(kI64);
  }

  Sequential model(const char* optimizer = "adam") {
    reset_layer_names();
    set_seed(21);
    Sequential m({Dense(8, {.activation = "relu", .input_shape = Shape{6}}), Dense(3, {.activation = "softmax"})});
    m.compile(optimizer, "sparse_categorical_crossentropy", {"accuracy"});
    return m;
  }
  // 64 rows in batches of 16: 4 steps per epoch.
  History fit(Sequential& m, int epochs, CallbackPtr callback, bool validate = true) {
    FitOptions options{.epochs = epochs, .batch_size = 16, .callbacks = {callback}, .verbose = 0};
    if (validate) options.validation_data = ValidationData{x_val_, y_val_};
    return m.fit(x_, y_, options);
  }
  // (step, epoch) of every checkpoint in dir, and the monitored value recorded in its extra.
  std::vector<std::pair<int64_t, int64_t>> saved(Sequential& m, const std::string& monitor = "",
                                                 std::vector<double>* values = nullptr) {
    std::vector<std::pair<int64_t, int64_t>> out;
    if (!fs::exists(dir_)) return out;
    CheckpointManager reader(dir_, m, {.max_to_keep = 0});
    for (const std::string& path : reader.checkpoints()) {
      CheckpointInfo info = reader.restore(path);
      out.emplace_back(info.step, info.epoch);
      if (values) values->push_back(std::stod(info.extra.at(monitor)));
    }
    return out;
  }

  Tensor x_val_, y_val_;
};

TEST_F(ModelCheckpointTest, SavesEveryEpochNamedByIterationWithTheLogs) {
  Sequential m = model();
  History h = fit(m, 3, ModelCheckpoint(dir_));
  std::vector<double> val_loss;
  Sequential reader = model();
  EXPECT_EQ(saved(reader, "val_loss", &val_loss), (std::vector<std::pair<int64_t, int64_t>>{{4, 0}, {8, 1}, {12, 2}}));
  EXPECT_EQ(val_loss, h.history.at("val_loss"));
  EXPECT_EQ(weights(reader), weights(m)) << "the last one restored: the trained weights";
}

TEST_F(ModelCheckpointTest, EveryNBatches) {
  Sequential m = model();
  fit(m, 2, ModelCheckpoint(dir_, {.save_freq = "3", .max_to_keep = 0}), false);
  Sequential reader = model();
  EXPECT_EQ(saved(reader), (std::vector<std::pair<int64_t, int64_t>>{{3, 0}, {6, 1}}));
}

// save_best_only keeps exactly the epochs whose monitored value beat every earlier one, in the mode's
// direction; the expectation comes from the History of the same run.
TEST_F(ModelCheckpointTest, SaveBestOnlyFollowsTheMode) {
  struct Case {
    std::string monitor, mode;
    bool maximize;
  };
  for (const Case& c : {Case{"val_loss", "auto", false}, Case{"val_loss", "max", true},
                        Case{"val_accuracy", "auto", true}, Case{"loss", "min", false}}) {
    SCOPED_TRACE(c.monitor + " " + c.mode);
    fs::remove_all(dir_);
    Sequential m = model("sgd");
    History h = fit(m, 8, ModelCheckpoint(dir_, {.monitor = c.monitor, .mode = c.mode, .save_best_only = true,
                                                 .max_to_keep = 0}));
    std::vector<std::pair<int64_t, int64_t>> expected;
    std::optional<double> best;
    const std::vector<double>& values = h.history.at(c.monitor);
    for (size_t e = 0; e < values.size(); ++e) {
      if (!best || (c.maximize ? values[e] > *best : values[e] < *best)) {
        best = values[e];
        expected.emplace_back(4 * static_cast<int64_t>(e + 1), static_cast<int64_t>(e));
      }
    }
    Sequential reader = model("sgd");
    EXPECT_EQ(saved(reader), expected);
  }
}

TEST_F(ModelCheckpointTest, AMissingMetricWarnsOnceAndSavesNothing) {
  Sequential m = model();
  ::testing::internal::CaptureStderr();
  fit(m, 3, ModelCheckpoint(dir_, {.monitor = "val_loss", .save_best_only = true}), /*validate=*/false);
  std::string log = ::testing::internal::GetCapturedStderr();
  size_t first = log.find("ModelCheckpoint: can save best model only with val_loss available");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("ModelCheckpoint", first + 1), std::string::npos) << "warned more than once: " << log;
  Sequential reader = model();
  EXPECT_TRUE(saved(reader).empty());
}

TEST_F(ModelCheckpointTest, AsyncSavesAreCompleteWhenFitReturns) {
  Sequential m = model();
  fit(m, 2, ModelCheckpoint(dir_, {.save_freq = "1", .max_to_keep = 0, .async = true}));
  Sequential reader = model();
  std::vector<std::pair<int64_t, int64_t>> all = saved(reader);
  ASSERT_EQ(all.size(), 8u);
  EXPECT_EQ(all.back(), (std::pair<int64_t, int64_t>{8, 1}));
  EXPECT_EQ(weights(reader), weights(m));
}

TEST_F(ModelCheckpointTest, BadOptionsAreRefused) {
  EXPECT_THROW(ModelCheckpoint(dir_, {.mode = "sideways"}), ValueError);
  for (const char* freq : {"0", "-2", "3x", "", "batch"}) {
    EXPECT_THROW(ModelCheckpoint(dir_, {.save_freq = freq}), ValueError) << freq;
  }
}

}  // namespace
}  // namespace gradflow
