// CheckpointOptions' policies: option validation, save_every_n_steps / save_every_seconds through
// maybe_save, and keep_every_n_hours (tf.train.CheckpointManager's rule), across a restart. Time comes
// from a clock the test sets, so hours pass instantly.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/checkpoint/checkpoint.h"
#include "core/gradflow.h"
#include "tests/core/checkpoint_fixture.h"

namespace gradflow {
namespace {

namespace fs = std::filesystem;

class CheckpointPolicyTest : public testing::CheckpointFixture {
 protected:
  void SetUp() override {
    CheckpointFixture::SetUp();
    reset_layer_names();
    model_ = std::make_unique<Sequential>(std::vector<Layer>{Dense(3, {.input_shape = Shape{4}})});
  }

  std::vector<int64_t> steps(const CheckpointManager& ckpt) {
    std::vector<int64_t> out;
    for (const std::string& path : ckpt.checkpoints()) out.push_back(std::stoll(fs::path(path).filename().string().substr(5)));
    return out;
  }

  std::unique_ptr<Sequential> model_;
  double clock_ = 1.7e9;  // seconds since the Unix epoch
  std::function<double()> now_ = [this] { return clock_; };
};

TEST_F(CheckpointPolicyTest, NegativeOptionsAreRefusedNamingTheOptionAndValue) {
  auto message = [&](CheckpointOptions options) -> std::string {
    try {
      CheckpointManager(dir_, *model_, options);
    } catch (const ValueError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(message({.max_to_keep = -1}).find("max_to_keep must not be negative, got -1"), std::string::npos);
  EXPECT_NE(message({.keep_every_n_hours = -2.5}).find("keep_every_n_hours must not be negative, got -2.5"), std::string::npos);
  EXPECT_NE(message({.save_every_n_steps = -3}).find("save_every_n_steps must not be negative, got -3"), std::string::npos);
  EXPECT_NE(message({.save_every_seconds = -4}).find("save_every_seconds must not be negative, got -4"), std::string::npos);
}

TEST_F(CheckpointPolicyTest, StepPolicySavesWhenTheStepIsAMultiple) {
  CheckpointManager ckpt(dir_, *model_, {.max_to_keep = 0, .save_every_n_steps = 3});
  for (int64_t step = 1; step <= 10; ++step) {
    std::optional<std::string> saved = ckpt.maybe_save(step);
    EXPECT_EQ(saved.has_value(), step % 3 == 0) << step;
    if (saved) {
      EXPECT_EQ(*saved, dir_ + "/ckpt-" + std::to_string(step));
    }
  }
  EXPECT_EQ(steps(ckpt), (std::vector<int64_t>{3, 6, 9}));
}

TEST_F(CheckpointPolicyTest, TimePolicyCountsFromTheLastSave) {
  CheckpointManager ckpt(dir_, *model_, {.max_to_keep = 0, .save_every_seconds = 10, .now = now_});
  clock_ += 9.5;
  EXPECT_FALSE(ckpt.maybe_save(1)) << "10 s since the manager was created have not passed";
  clock_ += 0.5;
  EXPECT_TRUE(ckpt.maybe_save(2));
  clock_ += 5;
  EXPECT_FALSE(ckpt.should_save(3));
  ckpt.save(4);  // an explicit save restarts the count too
  clock_ += 9;
  EXPECT_FALSE(ckpt.maybe_save(5));
  clock_ += 1;
  EXPECT_TRUE(ckpt.maybe_save(6));
  EXPECT_EQ(steps(ckpt), (std::vector<int64_t>{2, 4, 6}));
}

TEST_F(CheckpointPolicyTest, EitherPolicyTriggersAndNoPolicyIsAnError) {
  CheckpointManager both(dir_, *model_, {.save_every_n_steps = 100, .save_every_seconds = 60, .now = now_});
  EXPECT_TRUE(both.should_save(200));
  EXPECT_FALSE(both.should_save(201));
  clock_ += 60;
  EXPECT_TRUE(both.should_save(201));
  CheckpointManager none(dir_, *model_);
  EXPECT_THROW(none.should_save(1), StateError);
}

TEST_F(CheckpointPolicyTest, KeepEveryNHoursPreservesOnePerHourAcrossARestart) {
  CheckpointOptions options{.max_to_keep = 2, .keep_every_n_hours = 1, .now = now_};
  {
    CheckpointManager ckpt(dir_, *model_, options);
    for (int64_t step = 1; step <= 12; ++step) {  // one save every 20 minutes, for 4 hours
      clock_ += 20 * 60;
      ckpt.save(step);
    }
    // Counting from the manager's start: steps 3 (1 h), 6 (2 h) and 9 (3 h) are kept for good; 12 (4 h)
    // is still among the 2 newest.
    EXPECT_EQ(steps(ckpt), (std::vector<int64_t>{3, 6, 9, 11, 12}));
  }
  // A restarted job: the preserved ones stay, and the hour is counted on from step 9's save time.
  CheckpointManager restarted(dir_, *model_, options);
  for (int64_t step = 13; step <= 16; ++step) {
    clock_ += 20 * 60;
    restarted.save(step);
  }
  EXPECT_EQ(steps(restarted), (std::vector<int64_t>{3, 6, 9, 12, 15, 16}));
  // Without keep_every_n_hours only the max_to_keep newest remain.
  CheckpointManager plain(dir_, *model_, {.max_to_keep = 2, .now = now_});
  plain.save(17);
  EXPECT_EQ(steps(plain), (std::vector<int64_t>{16, 17}));
}

// Pruned checkpoints leave the listing at once and are deleted in the background (wait() waits for that);
// ones a crashed job left half-deleted go when the next manager starts.
TEST_F(CheckpointPolicyTest, PrunedCheckpointsAreDeletedAndLeftoversCleanedAtStart) {
  {
    CheckpointManager ckpt(dir_, *model_, {.max_to_keep = 1});
    ckpt.save(1);
    ckpt.save(2);
    EXPECT_EQ(steps(ckpt), (std::vector<int64_t>{2}));
    ckpt.wait();
    EXPECT_FALSE(fs::exists(dir_ + "/ckpt-1"));
    EXPECT_FALSE(fs::exists(dir_ + "/.ckpt-1.deleting"));
  }
  fs::create_directories(dir_ + "/.ckpt-7.deleting/sub");
  fs::create_directories(dir_ + "/.ckpt-8.tmp-1");  // an interrupted save: not ours to delete
  CheckpointManager again(dir_, *model_);
  EXPECT_FALSE(fs::exists(dir_ + "/.ckpt-7.deleting"));
  EXPECT_TRUE(fs::exists(dir_ + "/.ckpt-8.tmp-1"));
  EXPECT_EQ(steps(again), (std::vector<int64_t>{2}));
}

}  // namespace
}  // namespace gradflow
