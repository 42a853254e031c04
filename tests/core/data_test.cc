// core/data: every source and transformation against known values, cardinality, and error messages.
#include <gtest/gtest.h>

#include <atomic>

#include "core/data/dataset.h"
#include "core/ops/ops.h"
#include "tests/core/data_test_util.h"

namespace gradflow {
namespace {

using testing::expect_error;
using testing::ints;
using testing::iota;
using testing::keys;

TEST(DataSources, RangeValuesAndDtype) {
  EXPECT_EQ(ints(Dataset::range(5)), iota(0, 5));
  EXPECT_EQ(ints(Dataset::range(2, 10, 3)), (std::vector<int64_t>{2, 5, 8}));
  EXPECT_EQ(ints(Dataset::range(5, 0, -2)), (std::vector<int64_t>{5, 3, 1}));
  EXPECT_TRUE(ints(Dataset::range(3, 3)).empty());
  Element e = *Dataset::range(7, 8).make_iterator().next();
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].dtype(), kI64);
  EXPECT_EQ(e[0].rank(), 0);
  expect_error<ValueError>([] { Dataset::range(0, 10, 0); }, {"range", "step"});
}

TEST(DataSources, FromTensorSlicesSlicesAxisZero) {
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor y = from_vector<int64_t>({7, 8, 9});
  Dataset ds = Dataset::from_tensor_slices({x, y});
  EXPECT_EQ(keys(ds), (std::vector<std::string>{"f32[2]{1,2}|i64[]{7}", "f32[2]{3,4}|i64[]{8}",
                                                 "f32[2]{5,6}|i64[]{9}"}));
  EXPECT_EQ(ds.cardinality(), 3);
}

TEST(DataSources, FromTensorSlicesErrorsNameShapes) {
  expect_error<ShapeError>([] { Dataset::from_tensor_slices({zeros({3, 2}), zeros({4})}); },
                           {"from_tensor_slices", "[3,2]", "[4]"});
  expect_error<ShapeError>([] { Dataset::from_tensor_slices({scalar(1)}); }, {"scalar"});
  expect_error<ValueError>([] { Dataset::from_tensor_slices({}); }, {"from_tensor_slices"});
}

TEST(DataSources, FromTensorsIsOneElement) {
  Dataset ds = Dataset::from_tensors({from_vector<int64_t>({1, 2}), scalar(3)});
  EXPECT_EQ(keys(ds), (std::vector<std::string>{"i64[2]{1,2}|f32[]{3}"}));
  EXPECT_EQ(ds.cardinality(), 1);
}

// Each iterator calls the factory, so every pass starts from the beginning.
TEST(DataSources, FromGeneratorStartsFreshPerIterator) {
  auto calls = std::make_shared<std::atomic<int>>(0);
  Dataset ds = Dataset::from_generator([calls] {
    ++*calls;
    return [i = int64_t{0}]() mutable -> std::optional<Element> {
      if (i == 3) return std::nullopt;
      return Element{from_vector<int64_t>({i++}, Shape{})};
    };
  });
  EXPECT_EQ(ints(ds), iota(0, 3));
  EXPECT_EQ(ints(ds), iota(0, 3));
  EXPECT_EQ(calls->load(), 2);
  EXPECT_EQ(ds.cardinality(), Dataset::kUnknown);
}

TEST(DataTransforms, MapAndFilter) {
  Dataset ds = Dataset::range(10).map([](Element e) { return Element{e[0] * 3.0, e[0]}; });
  EXPECT_EQ(keys(ds, 2), (std::vector<std::string>{"i64[]{0}|i64[]{0}", "i64[]{3}|i64[]{1}"}));
  Dataset even = Dataset::range(10).filter([](const Element& e) { return e[0].item<int64_t>() % 2 == 0; });
  EXPECT_EQ(ints(even), iota(0, 10, 2));
  EXPECT_EQ(even.cardinality(), Dataset::kUnknown);
}

TEST(DataTransforms, TakeSkipRepeatShard) {
  EXPECT_EQ(ints(Dataset::range(10).take(3)), iota(0, 3));
  EXPECT_EQ(ints(Dataset::range(10).take(-1)), iota(0, 10));
  EXPECT_EQ(ints(Dataset::range(10).skip(7)), iota(7, 10));
  EXPECT_TRUE(ints(Dataset::range(10).skip(-1)).empty());
  EXPECT_EQ(ints(Dataset::range(3).repeat(2)), (std::vector<int64_t>{0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(ints(Dataset::range(3).repeat().take(7)), (std::vector<int64_t>{0, 1, 2, 0, 1, 2, 0}));
  EXPECT_TRUE(ints(Dataset::range(0).repeat()).empty());  // an empty input ends, never spins
  EXPECT_EQ(ints(Dataset::range(10).shard(3, 1)), (std::vector<int64_t>{1, 4, 7}));
  EXPECT_EQ(ints(Dataset::range(10).shard(3, 0)), (std::vector<int64_t>{0, 3, 6, 9}));
}

// shard and skip move past the elements they drop without making them: a batch only another worker
// takes is never stacked (a shape error in it is that worker's), and what passes is what next() gives.
TEST(DataTransforms, ShardAndSkipPassOverBatchesWithoutStackingThem) {
  using Keys = std::vector<std::string>;
  EXPECT_EQ(keys(Dataset::range(10).batch(4).shard(2, 1)), (Keys{"i64[4]{4,5,6,7}"}));
  EXPECT_EQ(keys(Dataset::range(10).batch(4).shard(2, 0)), (Keys{"i64[4]{0,1,2,3}", "i64[2]{8,9}"}));
  EXPECT_EQ(keys(Dataset::range(10).batch(4, /*drop_remainder=*/true).shard(2, 0)), (Keys{"i64[4]{0,1,2,3}"}));
  EXPECT_EQ(keys(Dataset::range(10).batch(3).skip(2)), (Keys{"i64[3]{6,7,8}", "i64[1]{9}"}));
  EXPECT_TRUE(keys(Dataset::range(10).batch(3, /*drop_remainder=*/true).skip(3)).empty());
  EXPECT_EQ(keys(Dataset::from_tensor_slices({arange(0, 6, 1, kI64)}).skip(4)), (Keys{"i64[]{4}", "i64[]{5}"}));
  EXPECT_EQ(keys(Dataset::from_tensor_slices({arange(0, 5, 1, kI64)}).shard(2, 1)), (Keys{"i64[]{1}", "i64[]{3}"}));
  // Elements of shapes [1] and [2] (no batch of them stacks), then [3] and [3].
  Dataset ragged = Dataset::from_generator([] {
    return [i = int64_t{0}]() mutable -> std::optional<Element> {
      if (i == 4) return std::nullopt;
      ++i;
      return Element{zeros({i < 3 ? i : 3}, kI64)};
    };
  });
  EXPECT_EQ(keys(ragged.batch(2).shard(2, 1)), (Keys{"i64[2,3]{0,0,0,0,0,0}"}));
  expect_error<ShapeError>([&] { keys(ragged.batch(2).shard(2, 0)); }, {"batch", "[2]"});
}

TEST(DataTransforms, ShardErrorNamesIndexAndCount) {
  expect_error<ValueError>([] { Dataset::range(10).shard(3, 3); }, {"shard", "index 3", "num_shards 3"});
  expect_error<ValueError>([] { Dataset::range(10).shard(0, 0); }, {"num_shards"});
  expect_error<ValueError>([] { Dataset::range(10).take(-2); }, {"take"});
}

TEST(DataTransforms, BatchStacksAndKeepsRemainder) {
  Dataset ds = Dataset::range(10).batch(4);
  EXPECT_EQ(keys(ds), (std::vector<std::string>{"i64[4]{0,1,2,3}", "i64[4]{4,5,6,7}", "i64[2]{8,9}"}));
  EXPECT_EQ(ds.cardinality(), 3);
  Dataset dropped = Dataset::range(10).batch(4, /*drop_remainder=*/true);
  EXPECT_EQ(keys(dropped).size(), 2u);
  EXPECT_EQ(dropped.cardinality(), 2);
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  Dataset pairs = Dataset::from_tensor_slices({x, from_vector<int64_t>({0, 1, 2})}).batch(2);
  EXPECT_EQ(keys(pairs), (std::vector<std::string>{"f32[2,2]{1,2,3,4}|i64[2]{0,1}", "f32[1,2]{5,6}|i64[1]{2}"}));
}

TEST(DataTransforms, BatchErrorNamesElementAndShapes) {
  Dataset ragged = Dataset::range(1, 4).map([](Element e) { return Element{zeros({e[0].item<int64_t>()})}; });
  expect_error<ShapeError>([&] { ragged.batch(3).make_iterator().next(); },
                           {"batch", "element 1", "[2]", "[1]", "padded_batch"});
}

TEST(DataTransforms, MergeBatchesJoinsAlongAxisZeroAndResumes) {
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {5, 2});
  Dataset merged = Dataset::from_tensor_slices({x, arange(0, 5, 1, kI64)}).batch(2).merge_batches(2);
  EXPECT_EQ(keys(merged), (std::vector<std::string>{"f32[4,2]{1,2,3,4,5,6,7,8}|i64[4]{0,1,2,3}",
                                                    "f32[1,2]{9,10}|i64[1]{4}"}));
  EXPECT_EQ(merged.cardinality(), 2);
  Iterator it = merged.make_iterator();
  it.next();
  Iterator resumed = merged.make_iterator(it.save());
  EXPECT_EQ(testing::drain(resumed), (std::vector<std::string>{"f32[1,2]{9,10}|i64[1]{4}"}));
  expect_error<ValueError>([] { Dataset::range(4).merge_batches(0); }, {"merge_batches", "0"});
  Dataset ragged = Dataset::range(1, 3).map([](Element e) { return Element{zeros({2, e[0].item<int64_t>()})}; });
  expect_error<ShapeError>([&] { ragged.merge_batches(2).make_iterator().next(); },
                           {"merge_batches", "element 1", "[2,2]", "[2,1]", "axis 0"});
}

TEST(DataTransforms, PaddedBatchPadsToLongestOrGivenShape) {
  Dataset ragged = Dataset::range(1, 4).map([](Element e) {
    return Element{arange(0, static_cast<double>(e[0].item<int64_t>()), 1, kI64), e[0]};
  });
  EXPECT_EQ(keys(ragged.padded_batch(3, {}, {-1})),
            (std::vector<std::string>{"i64[3,3]{0,-1,-1,0,1,-1,0,1,2}|i64[3]{1,2,3}"}));
  EXPECT_EQ(keys(ragged.padded_batch(2, {{5}, {}})),
            (std::vector<std::string>{"i64[2,5]{0,0,0,0,0,0,1,0,0,0}|i64[2]{1,2}", "i64[1,5]{0,1,2,0,0}|i64[1]{3}"}));
  EXPECT_EQ(keys(ragged.padded_batch(2, {}, {}, /*drop_remainder=*/true)).size(), 1u);
  expect_error<ShapeError>([&] { ragged.padded_batch(3, {{2}, {}}).make_iterator().next(); },
                           {"padded_batch", "element 2", "[3]", "[2]"});
}

TEST(DataTransforms, ShuffleIsASeededPermutation) {
  Dataset a = Dataset::range(100).shuffle(10, 42);
  std::vector<int64_t> order = ints(a);
  std::vector<int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, iota(0, 100));
  EXPECT_NE(order, iota(0, 100));
  EXPECT_EQ(order, ints(Dataset::range(100).shuffle(10, 42)));  // same seed, same order
  EXPECT_NE(order, ints(Dataset::range(100).shuffle(10, 43)));
  EXPECT_EQ(ints(Dataset::range(10).shuffle(1, 5)), iota(0, 10));  // a one-slot buffer cannot reorder
  // An element moves at most buffer_size - 1 places earlier.
  for (size_t i = 0; i < order.size(); ++i) EXPECT_LT(order[i], static_cast<int64_t>(i) + 10);
}

// Pins the algorithm: saved iterator states and reproducibility across versions depend on it.
TEST(DataTransforms, ShuffleGoldenOrder) {
  std::vector<int64_t> order = ints(Dataset::range(10).shuffle(4, 42));
  EXPECT_EQ(order, (std::vector<int64_t>{0, 1, 4, 5, 7, 8, 2, 9, 3, 6}));
}

TEST(DataTransforms, ShuffleReshufflesEachIterationDeterministically) {
  Dataset ds = Dataset::range(50).shuffle(50, 7);
  std::vector<int64_t> first = ints(ds), second = ints(ds);
  EXPECT_NE(first, second);
  Dataset again = Dataset::range(50).shuffle(50, 7);  // a rebuilt pipeline repeats the same epochs
  EXPECT_EQ(ints(again), first);
  EXPECT_EQ(ints(again), second);
  // repeat() takes a new pass per round, in the same sequence.
  std::vector<int64_t> both = ints(Dataset::range(50).shuffle(50, 7).repeat(2));
  std::vector<int64_t> expected = first;
  expected.insert(expected.end(), second.begin(), second.end());
  EXPECT_EQ(both, expected);
  Dataset fixed = Dataset::range(50).shuffle(50, 7, /*reshuffle_each_iteration=*/false);
  EXPECT_EQ(ints(fixed), ints(fixed));
}

TEST(DataTransforms, ShuffleWithoutSeedFollowsGlobalSeed) {
  set_seed(123);
  std::vector<int64_t> a = ints(Dataset::range(30).shuffle(30));
  set_seed(123);
  std::vector<int64_t> b = ints(Dataset::range(30).shuffle(30));
  EXPECT_EQ(a, b);
}

// TF's documented example (tf.data.Dataset.interleave).
TEST(DataTransforms, InterleaveOrderMatchesTensorFlow) {
  auto fn = [](const Element& e) { return Dataset::from_tensors(e).repeat(6); };
  std::vector<int64_t> expected{1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 3, 3, 4, 4, 5, 5, 5, 5, 5, 5};
  EXPECT_EQ(ints(Dataset::range(1, 6).interleave(fn, {.cycle_length = 2, .block_length = 4})), expected);
  EXPECT_EQ(ints(Dataset::range(1, 6).interleave(fn, {.cycle_length = 2, .block_length = 4, .num_parallel_calls = 2})),
            expected);
  // Inputs of different lengths: a finished slot is refilled from the input in place.
  auto ranges = [](const Element& e) {
    int64_t x = e[0].item<int64_t>();
    return Dataset::range(x * 10, x * 10 + x);
  };
  EXPECT_EQ(ints(Dataset::range(1, 5).interleave(ranges, {.cycle_length = 2})),
            (std::vector<int64_t>{10, 20, 21, 30, 31, 40, 32, 41, 42, 43}));
  EXPECT_EQ(Dataset::range(3).interleave(ranges).cardinality(), Dataset::kUnknown);
}

TEST(DataTransforms, Cardinality) {
  EXPECT_EQ(Dataset::range(10).cardinality(), 10);
  EXPECT_EQ(Dataset::range(10).batch(3).cardinality(), 4);
  EXPECT_EQ(Dataset::range(10).repeat().cardinality(), Dataset::kInfinite);
  EXPECT_EQ(Dataset::range(10).repeat(3).cardinality(), 30);
  EXPECT_EQ(Dataset::range(10).repeat().take(5).cardinality(), 5);
  EXPECT_EQ(Dataset::range(10).skip(4).cardinality(), 6);
  EXPECT_EQ(Dataset::range(10).shard(3, 1).cardinality(), 3);
  EXPECT_EQ(Dataset::range(10).shard(3, 0).cardinality(), 4);
  EXPECT_EQ(Dataset::range(10).shuffle(5, 1).map([](Element e) { return e; }).prefetch(2).cache().cardinality(), 10);
}

TEST(DataIteration, RangeForOverDatasetAndIterator) {
  int64_t sum = 0;
  for (const Element& e : Dataset::range(5)) sum += e[0].item<int64_t>();
  EXPECT_EQ(sum, 10);
  Iterator it = Dataset::range(5).make_iterator();
  it.next();
  std::vector<int64_t> rest;
  for (const Element& e : it) rest.push_back(e[0].item<int64_t>());
  EXPECT_EQ(rest, iota(1, 5));
  EXPECT_FALSE(it.next().has_value());
}

TEST(DataIteration, ErrorsSurfaceInPlaceAndIterationGoesOn) {
  Dataset ds = Dataset::range(6).map([](Element e) {
    if (e[0].item<int64_t>() == 2) throw ValueError("bad element 2");
    return e;
  });
  for (Dataset d : {ds, ds.prefetch(3)}) {
    Iterator it = d.make_iterator();
    EXPECT_EQ(it.next()->at(0).item<int64_t>(), 0);
    EXPECT_EQ(it.next()->at(0).item<int64_t>(), 1);
    expect_error<ValueError>([&] { it.next(); }, {"bad element 2"});
    EXPECT_EQ(it.next()->at(0).item<int64_t>(), 3);
  }
}

TEST(DataIteration, OptionErrors) {
  Dataset ds = Dataset::range(3);
  expect_error<ValueError>([&] { ds.batch(0); }, {"batch_size"});
  expect_error<ValueError>([&] { ds.shuffle(0, 1); }, {"buffer_size"});
  expect_error<ValueError>([&] { ds.prefetch(0); }, {"prefetch"});
  expect_error<ValueError>([&] { ds.map([](Element e) { return e; }, {.num_parallel_calls = 0}); },
                           {"num_parallel_calls"});
  expect_error<ValueError>([&] { ds.interleave([](const Element& e) { return Dataset::from_tensors(e); },
                                               {.block_length = 0}); },
                           {"block_length"});
}

}  // namespace
}  // namespace gradflow
