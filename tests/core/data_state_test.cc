// core/data iterator state: for every transformation, iterate k elements, save, resume from the state in
// a freshly built pipeline (as a restarted job would) and get exactly the uninterrupted remainder.
#include <gtest/gtest.h>

#include "core/data/dataset.h"
#include "core/ops/ops.h"
#include "tests/core/data_test_util.h"

namespace gradflow {
namespace {

using testing::drain;
using testing::expect_error;
using testing::keys;
using testing::times;

// `build` stands for the job's pipeline code: each call builds it anew, as a restarted process would.
void expect_resumes_at(const std::function<Dataset()>& build, int64_t k) {
  SCOPED_TRACE(str_cat("resuming after ", k, " elements"));
  std::vector<std::string> full = keys(build());
  Dataset ds = build();
  Iterator it = ds.make_iterator();
  std::vector<std::string> seen = drain(it, k);
  IteratorState state = it.save();

  Iterator resumed = build().make_iterator(state);
  std::vector<std::string> rest = drain(resumed);
  seen.insert(seen.end(), rest.begin(), rest.end());
  EXPECT_EQ(seen, full);
  // Saving does not disturb the saved iterator, and restore() rewinds an iterator in place.
  EXPECT_EQ(drain(it), rest);
  it.restore(state);
  EXPECT_EQ(drain(it), rest);
}

void expect_resumes(const std::function<Dataset()>& build, const std::vector<int64_t>& ks) {
  for (int64_t k : ks) expect_resumes_at(build, k);
}

MapFn doubled() {
  return [](Element e) { return times(std::move(e), 2.0); };
}

TEST(DataState, ShuffleMapBatchPrefetchPipeline) {
  expect_resumes(
      [] {
        return Dataset::range(1000)
            .shuffle(100, 42)
            .map(doubled(), {.num_parallel_calls = 4})
            .batch(32)
            .prefetch(2);
      },
      {0, 1, 5, 17, 31, 32});
}

TEST(DataState, Sources) {
  Tensor x = arange(0, 24, 1, kF32).reshape({12, 2});
  expect_resumes([&] { return Dataset::from_tensor_slices({x, arange(0, 12, 1, kI64)}); }, {0, 5, 12});
  expect_resumes([] { return Dataset::range(3, 40, 4); }, {0, 4, 10});
  expect_resumes([] { return Dataset::from_tensors({scalar(1)}); }, {0, 1});
}

TEST(DataState, CountingTransformations) {
  expect_resumes([] { return Dataset::range(30).skip(4).take(20).shard(3, 2); }, {0, 3, 7});
  expect_resumes([] { return Dataset::range(5).repeat(3); }, {0, 4, 5, 6, 14, 15});
  expect_resumes([] { return Dataset::range(5).repeat().take(23); }, {2, 11, 22});
  expect_resumes(
      [] { return Dataset::range(40).filter([](const Element& e) { return e[0].item<int64_t>() % 3 == 0; }); },
      {0, 6, 14});
}

// Each round of the repeat is a new shuffle pass; a resumed job must replay the same passes.
TEST(DataState, ShuffleAcrossRepeatRounds) {
  expect_resumes([] { return Dataset::range(50).shuffle(20, 3).repeat(3).batch(7); }, {0, 3, 7, 10, 20, 22});
  expect_resumes([] { return Dataset::range(20).shuffle(8, 5, /*reshuffle_each_iteration=*/false).repeat(2); },
                 {13, 27});
}

// A later epoch's iterator (not the first) of a reshuffling dataset.
TEST(DataState, SecondEpochIteratorResumes) {
  Dataset ds = Dataset::range(30).shuffle(30, 11);
  keys(ds);  // epoch 0
  Iterator it = ds.make_iterator();
  std::vector<std::string> head = drain(it, 10);
  IteratorState state = it.save();
  std::vector<std::string> rest = drain(it);
  Dataset rebuilt = Dataset::range(30).shuffle(30, 11);
  Iterator resumed = rebuilt.make_iterator(state);
  EXPECT_EQ(drain(resumed), rest);
  // The next epoch after the resumed one is the uninterrupted run's third.
  EXPECT_EQ(keys(rebuilt), keys(ds));
}

TEST(DataState, BatchAndPaddedBatch) {
  auto ragged = [] {
    return Dataset::range(1, 12).map([](Element e) {
      return Element{arange(0, static_cast<double>(e[0].item<int64_t>()), 1, kF32)};
    });
  };
  expect_resumes([&] { return ragged().padded_batch(3, {}, {-1}); }, {0, 1, 3, 4});
  expect_resumes([] { return Dataset::range(10).batch(4, true); }, {0, 1, 2});
}

TEST(DataState, MapStateIsInterchangeableAcrossThreadCounts) {
  auto build = [](int64_t threads) {
    return Dataset::range(100).map(doubled(), {.num_parallel_calls = threads}).prefetch(4);
  };
  for (int64_t threads : {1, 3, 8}) {
    expect_resumes([&] { return build(threads); }, {0, 9, 50, 100});
  }
  Iterator it = build(8).make_iterator();
  std::vector<std::string> head = drain(it, 20);
  IteratorState state = it.save();
  Iterator one = build(1).make_iterator(state);
  EXPECT_EQ(drain(one), drain(it));
}

TEST(DataState, Interleave) {
  auto build = [](int64_t calls) {
    return Dataset::range(1, 8).interleave(
        [](const Element& e) {
          int64_t x = e[0].item<int64_t>();
          return Dataset::range(x * 100, x * 100 + x).shuffle(3, static_cast<uint64_t>(x));
        },
        {.cycle_length = 3, .block_length = 2, .num_parallel_calls = calls});
  };
  for (int64_t calls : {1, 3}) {
    SCOPED_TRACE(str_cat("num_parallel_calls ", calls));
    expect_resumes([&] { return build(calls); }, {0, 1, 2, 5, 11, 20, 27, 28});
  }
}

TEST(DataState, MemoryCacheReplaysItsInput) {
  auto build = [] { return Dataset::range(20).shuffle(10, 1).cache().repeat(3); };
  // While recording (first round) and while reading (later rounds), in a new process the memory cache is
  // empty: restoring replays the recorded pass.
  expect_resumes(build, {0, 5, 19, 20, 25, 45, 60});
}

TEST(DataState, FileCacheResumesWritingAndReading) {
  testing::TempDir dir;
  std::string path = dir.file("cache.bin");
  auto build = [&] { return Dataset::range(20).map(doubled()).cache(path).repeat(2); };
  std::vector<std::string> full = keys(Dataset::range(20).map(doubled()).repeat(2));

  // Interrupted while recording: the job dies (its iterator goes away, no file is left) and resumes.
  IteratorState writing;
  std::vector<std::string> seen;
  {
    Iterator it = build().make_iterator();
    seen = drain(it, 7);
    writing = it.save();
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  Iterator resumed = build().make_iterator(writing);
  std::vector<std::string> rest = drain(resumed);
  seen.insert(seen.end(), rest.begin(), rest.end());
  EXPECT_EQ(seen, full);
  ASSERT_TRUE(std::filesystem::exists(path));  // the resumed pass completed the recording

  // A recording-mode state restored after another process finished the file reads the file instead.
  Iterator late = build().make_iterator(writing);
  EXPECT_EQ(drain(late), rest);
  // Reading mode, from the finished file.
  expect_resumes(build, {0, 7, 20, 33, 40});
}

TEST(DataState, GeneratorCannotBeSaved) {
  Dataset ds = Dataset::from_generator([] {
    return [i = 0]() mutable -> std::optional<Element> {
      if (i == 5) return std::nullopt;
      return Element{scalar(i++)};
    };
  });
  for (Dataset d : {ds, ds.map(doubled()).prefetch(2), ds.cache()}) {
    Iterator it = d.make_iterator();
    it.next();
    expect_error<StateError>([&] { it.save(); }, {"from_generator", "cannot be saved"});
    EXPECT_TRUE(it.next().has_value());  // a failed save leaves the iterator usable
  }
}

TEST(DataState, MismatchedPipelineAndGarbageAreValueErrors) {
  Iterator it = Dataset::range(10).shuffle(5, 1).make_iterator();
  it.next();
  IteratorState state = it.save();
  expect_error<ValueError>([&] { Dataset::range(10).batch(2).make_iterator(state); }, {"shuffle", "batch"});
  expect_error<ValueError>([&] { Dataset::range(10).make_iterator(IteratorState::from_bytes("not a state")); },
                           {"restore"});
  expect_error<ValueError>([&] { Dataset::range(10).make_iterator(IteratorState()); }, {"restore"});
  EXPECT_NE(state.debug_string().find("\"shuffle\""), std::string::npos);
  EXPECT_NE(state.debug_string().find("i64[]"), std::string::npos);  // buffered tensors, shortened
}

// Every position of a small pipeline mixing all stateful pieces, including the end.
TEST(DataState, EveryPositionOfAMixedPipeline) {
  auto build = [] {
    return Dataset::range(1, 7)
        .interleave([](const Element& e) { return Dataset::range(e[0].item<int64_t>()).map(doubled()); },
                    {.cycle_length = 2, .block_length = 2, .num_parallel_calls = 2})
        .shuffle(4, 9)
        .map(doubled(), {.num_parallel_calls = 3})
        .prefetch(3)
        .batch(2);
  };
  int64_t n = static_cast<int64_t>(keys(build()).size());
  for (int64_t k = 0; k <= n; ++k) expect_resumes_at(build, k);
}

}  // namespace
}  // namespace gradflow
