// core/data with threads: parallel map determinism whatever the thread count, prefetch shutdown while its
// producer is blocked, saving while background threads run, parallel interleave order.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/data/dataset.h"
#include "core/ops/ops.h"
#include "tests/core/data_test_util.h"

namespace gradflow {
namespace {

using testing::drain;
using testing::expect_error;
using testing::ints;
using testing::keys;

// A map whose calls take uneven time, so threads finish out of order.
Element slow_square(Element e) {
  int64_t v = e[0].item<int64_t>();
  std::this_thread::sleep_for(std::chrono::microseconds((v * 7919) % 13 * 100));
  return Element{e[0] * e[0], e[0]};
}

TEST(DataThreads, ParallelMapIsDeterministicForAnyThreadCount) {
  auto build = [](int64_t threads) {
    return Dataset::range(300).shuffle(64, 9).map(slow_square, {.num_parallel_calls = threads}).batch(16);
  };
  std::vector<std::string> reference = keys(build(1));
  for (int64_t threads : std::vector<int64_t>{2, 4, 8, kAutotune}) {
    EXPECT_EQ(keys(build(threads)), reference) << threads << " threads";
  }
}

TEST(DataThreads, NonDeterministicMapKeepsEveryElement) {
  std::vector<int64_t> got =
      ints(Dataset::range(200).map(slow_square, {.num_parallel_calls = 4, .deterministic = false}).map(
          [](Element e) { return Element{e[1]}; }));
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, testing::iota(0, 200));
}

TEST(DataThreads, ParallelMapErrorKeepsItsPlace) {
  Dataset ds = Dataset::range(20).map(
      [](Element e) {
        if (e[0].item<int64_t>() == 5) throw ShapeError("element 5 is bad");
        return slow_square(std::move(e));
      },
      {.num_parallel_calls = 4});
  Iterator it = ds.make_iterator();
  EXPECT_EQ(drain(it, 5).size(), 5u);
  expect_error<ShapeError>([&] { it.next(); }, {"element 5 is bad"});
  EXPECT_EQ(it.next()->at(1).item<int64_t>(), 6);
}

// The producer fills the queue and blocks; destroying the iterator must stop it at once.
TEST(DataThreads, PrefetchStopsWhileProducerIsBlocked) {
  auto produced = std::make_shared<std::atomic<int64_t>>(0);
  Dataset ds = Dataset::range(0, 1'000'000'000).map([produced](Element e) {
    ++*produced;
    return e;
  }).prefetch(2);
  for (int round = 0; round < 20; ++round) {
    Iterator it = ds.make_iterator();
    it.next();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // let the producer fill up and block
  }
  EXPECT_LT(produced->load(), 20 * 10);  // bounded: nobody ran ahead unchecked
}

// Destroyed while the producer is inside a slow upstream call, and while parallel map workers are busy.
TEST(DataThreads, ShutdownDuringSlowUpstreamCalls) {
  Dataset slow = Dataset::range(1000).map([](Element e) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return e;
  });
  auto start = std::chrono::steady_clock::now();
  for (int round = 0; round < 10; ++round) {
    Iterator a = slow.prefetch(8).make_iterator();
    Iterator b = slow.map([](Element e) { return e; }, {.num_parallel_calls = 4}).prefetch(kAutotune).make_iterator();
    Iterator c = slow.interleave([](const Element& e) { return Dataset::from_tensors(e).repeat(100); },
                                 {.cycle_length = 4, .num_parallel_calls = 4})
                     .make_iterator();
    a.next();
    b.next();
    c.next();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST(DataThreads, NeverConsumedIteratorsShutDown) {
  for (int round = 0; round < 50; ++round) {
    Iterator it = Dataset::range(100)
                      .map([](Element e) { return e; }, {.num_parallel_calls = 3})
                      .prefetch(1)
                      .interleave([](const Element& e) { return Dataset::from_tensors(e).prefetch(1); },
                                  {.cycle_length = 2, .num_parallel_calls = 2})
                      .prefetch(kAutotune)
                      .make_iterator();
  }
  SUCCEED();
}

// Assigning over an iterator stops its threads before its (here temporary) dataset goes away.
TEST(DataThreads, ReassignedIteratorStopsFirst) {
  Iterator it = Dataset::range(1000).map([](Element e) { return e; }, {.num_parallel_calls = 2}).prefetch(4)
                    .make_iterator();
  for (int round = 0; round < 20; ++round) {
    it.next();
    it = Dataset::from_tensors({scalar(round)}).repeat().map([](Element e) { return e; }, {.num_parallel_calls = 2})
             .prefetch(4)
             .make_iterator();
  }
  EXPECT_EQ(it.next()->at(0).item<int64_t>(), 19);
}

// Saving pauses the background threads mid-flight; the resumed remainder is exact.
TEST(DataThreads, SaveWhileThreadsRun) {
  auto build = [] {
    return Dataset::range(400)
        .shuffle(50, 4)
        .map(slow_square, {.num_parallel_calls = 4})
        .prefetch(16)
        .map([](Element e) { return e; }, {.num_parallel_calls = 2})
        .prefetch(4);
  };
  std::vector<std::string> full = keys(build());
  for (int64_t k : {1, 37, 250}) {
    Iterator it = build().make_iterator();
    std::vector<std::string> seen = drain(it, k);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // let the threads run ahead
    IteratorState state = it.save();
    Iterator resumed = build().make_iterator(state);
    std::vector<std::string> rest = drain(resumed);
    seen.insert(seen.end(), rest.begin(), rest.end());
    EXPECT_EQ(seen, full) << "k = " << k;
    EXPECT_EQ(drain(it), rest);
  }
}

TEST(DataThreads, ParallelInterleaveKeepsSequentialOrder) {
  auto build = [](int64_t calls, int64_t cycle, int64_t block) {
    return Dataset::range(1, 12).interleave(
        [](const Element& e) {
          int64_t x = e[0].item<int64_t>();
          return Dataset::range(x * 100, x * 100 + x % 5 + 1).map(slow_square);
        },
        {.cycle_length = cycle, .block_length = block, .num_parallel_calls = calls});
  };
  for (int64_t cycle : {1, 3, 5}) {
    for (int64_t block : {1, 2, 4}) {
      std::vector<std::string> sequential = keys(build(1, cycle, block));
      EXPECT_EQ(keys(build(4, cycle, block)), sequential) << "cycle " << cycle << " block " << block;
      EXPECT_EQ(keys(build(kAutotune, cycle, block)), sequential) << "cycle " << cycle << " block " << block;
    }
  }
}

}  // namespace
}  // namespace gradflow
