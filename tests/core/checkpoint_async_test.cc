// Async checkpoint saves: the checkpoint holds the state at save() even when training changes it right
// after; the files are byte-identical to a synchronous save; errors surface from wait(); restore and the
// destructor wait for the pending save.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/checkpoint/checkpoint.h"
#include "core/checkpoint/stream_copy.h"
#include "core/gradflow.h"
#include "tests/core/checkpoint_fixture.h"

namespace gradflow {
namespace {

namespace fs = std::filesystem;

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class CheckpointAsyncTest : public testing::CheckpointFixture {
 protected:
  Sequential fresh_model() {
    reset_layer_names();
    // Big enough (about 4 MB) that writing takes longer than the training steps that follow a save.
    Sequential m({Dense(1024, {.activation = "relu", .input_shape = Shape{6}}), Dropout(0.3), Dense(1024),
                  Dense(3, {.activation = "softmax"})});
    m.compile("adam", "sparse_categorical_crossentropy");
    return m;
  }
  // The directory replaced by a plain file: nothing can be written below it (even by root).
  void make_unwritable() {
    fs::remove_all(dir_);
    std::ofstream(dir_) << "not a directory";
  }
};

TEST_F(CheckpointAsyncTest, HoldsTheStateAtSaveEvenWhenTrainingGoesOnAtOnce) {
  set_seed(3);
  Sequential m = fresh_model();
  train(m, 2);
  std::vector<std::vector<float>> at_save = weights(m);
  GeneratorState rng_at_save = global_generator().state();
  CheckpointManager ckpt(dir_, m, {.async = true});
  ckpt.save(2);
  train(m, 3);  // changes the variables, the slots and the generator while the save is written
  ASSERT_NE(weights(m), at_save);
  ckpt.wait();

  set_seed(77);
  Sequential restored = fresh_model();
  CheckpointManager reader(dir_, restored);
  std::optional<CheckpointInfo> info = reader.restore_latest();
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->step, 2);
  EXPECT_EQ(weights(restored), at_save);
  EXPECT_EQ(restored.impl().training->optimizer->iterations(), 2);
  EXPECT_EQ(global_generator().state().seed, rng_at_save.seed);
  EXPECT_EQ(global_generator().state().next_stream, rng_at_save.next_stream);
}

TEST_F(CheckpointAsyncTest, WritesTheSameBytesAsASynchronousSave) {
  set_seed(4);
  Sequential m = fresh_model();
  train(m, 3);
  std::function<double()> fixed_clock = [] { return 1.7e9; };  // meta.json records the save time
  CheckpointManager sync(dir_ + "/sync", m, {.now = fixed_clock});
  CheckpointManager async(dir_ + "/async", m, {.async = true, .now = fixed_clock});
  sync.save(3, 1, {{"k", "v"}});
  async.save(3, 1, {{"k", "v"}});
  async.wait();
  for (const char* file : {"ckpt-3/meta.json", "ckpt-3/model.safetensors", "ckpt-3/optimizer.safetensors", "latest"}) {
    std::string a = bytes_of(dir_ + "/sync/" + file), b = bytes_of(dir_ + "/async/" + file);
    EXPECT_FALSE(a.empty()) << file;
    EXPECT_TRUE(a == b) << file << " differs";
  }
  EXPECT_EQ(sha256_file(dir_ + "/async/ckpt-3/model.safetensors"), sha256_file(dir_ + "/sync/ckpt-3/model.safetensors"));
}

TEST_F(CheckpointAsyncTest, AFailedSaveSurfacesFromWaitNamingThePath) {
  Sequential m = fresh_model();
  CheckpointManager ckpt(dir_, m, {.async = true});
  make_unwritable();
  ckpt.save(1);  // the state is copied; the write fails in the background
  try {
    ckpt.wait();
    ADD_FAILURE() << "wait() did not report the failed save";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir_ + "/.ckpt-1.tmp-"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(ckpt.wait()) << "the error is reported once";
  ckpt.save(2);
  EXPECT_THROW(ckpt.save(3), Error) << "the next save reports the previous one's failure";
}

TEST_F(CheckpointAsyncTest, RestoreAndTheDestructorWaitForThePendingSave) {
  set_seed(5);
  Sequential m = fresh_model();
  train(m, 1);
  std::vector<std::vector<float>> at_save = weights(m);
  {
    CheckpointManager ckpt(dir_, m, {.async = true});
    ckpt.save(1);
    train(m, 1);
    EXPECT_EQ(ckpt.restore(dir_ + "/ckpt-1").step, 1) << "restore waited for the save it reads";
    EXPECT_EQ(weights(m), at_save);
    train(m, 1);
    ckpt.save(2);
  }  // the destructor waits: step 2 is complete now
  std::ifstream latest(dir_ + "/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "ckpt-2");
  Sequential restored = fresh_model();
  EXPECT_EQ(CheckpointManager(dir_, restored).restore(dir_ + "/ckpt-2").step, 2);
  EXPECT_EQ(weights(restored), weights(m));
}

TEST_F(CheckpointAsyncTest, TheDestructorReportsAFailedSaveOnStderr) {
  Sequential m = fresh_model();
  ::testing::internal::CaptureStderr();
  {
    CheckpointManager ckpt(dir_, m, {.async = true});
    make_unwritable();
    ckpt.save(7);
  }
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("the last checkpoint save in " + dir_ + " failed"), std::string::npos) << log;
  EXPECT_NE(log.find(".ckpt-7.tmp-"), std::string::npos) << log;
}

// The snapshot's copy (non-temporal stores, 4 pages side by side) equals memcpy for every size and
// misalignment of either end, including the unaligned head and tail around whole 16 KiB blocks.
TEST(StreamCopy, EqualsMemcpyAtEveryOffsetAndSize) {
  std::vector<char> from(3 * 16384 + 300), to(from.size() + 64);
  for (size_t i = 0; i < from.size(); ++i) from[i] = static_cast<char>(i * 131 + 7);
  for (size_t from_offset : {0, 1, 17, 64}) {
    for (size_t to_offset : {0, 3, 64}) {
      for (size_t n : {size_t{0}, size_t{1}, size_t{63}, size_t{4097}, size_t{16384}, size_t{2 * 16384 + 129}}) {
        std::fill(to.begin(), to.end(), 0);
        checkpoint_files::stream_copy(to.data() + to_offset, from.data() + from_offset, n);
        EXPECT_EQ(std::memcmp(to.data() + to_offset, from.data() + from_offset, n), 0) << from_offset << " " << to_offset << " " << n;
        EXPECT_TRUE(std::all_of(to.begin(), to.begin() + to_offset, [](char c) { return c == 0; }));
        EXPECT_TRUE(std::all_of(to.begin() + to_offset + n, to.end(), [](char c) { return c == 0; })) << "wrote past the end";
      }
    }
  }
}

}  // namespace
}  // namespace gradflow
