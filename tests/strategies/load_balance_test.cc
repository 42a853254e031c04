// balanced_bounds and updated_speeds (strategies/load_balance.h): the split of a global batch by the
// replicas' speeds, and the moving average of those speeds.
#include <gtest/gtest.h>

#include "strategies/load_balance.h"

namespace gradflow::strategies {
namespace {

TEST(LoadBalance, BoundsFollowTheSpeeds) {
  EXPECT_EQ(balanced_bounds(64, {1.0, 1.0}), (std::vector<int64_t>{0, 32, 64}));
  EXPECT_EQ(balanced_bounds(64, {3.0, 1.0}), (std::vector<int64_t>{0, 48, 64}));
  // 10 rows in shares 3.33 / 3.33 / 3.33: the leftover row goes to the lowest replica.
  EXPECT_EQ(balanced_bounds(10, {2.0, 2.0, 2.0}), (std::vector<int64_t>{0, 4, 7, 10}));
  // Largest fractional parts first: shares 6.6 / 3.4 of 10.
  EXPECT_EQ(balanced_bounds(10, {66.0, 34.0}), (std::vector<int64_t>{0, 7, 10}));
}

TEST(LoadBalance, NoReplicaIsLeftWithoutRowsWhileThereAreEnough) {
  EXPECT_EQ(balanced_bounds(4, {1000.0, 1.0, 1.0}), (std::vector<int64_t>{0, 2, 3, 4}));
  EXPECT_EQ(balanced_bounds(2, {1.0, 1.0, 1.0}), (std::vector<int64_t>{0, 1, 2, 2})) << "fewer rows than replicas";
  EXPECT_EQ(balanced_bounds(0, {1.0, 2.0}), (std::vector<int64_t>{0, 0, 0}));
}

TEST(LoadBalance, UnknownSpeedsSplitEqually) {
  EXPECT_EQ(balanced_bounds(7, {}), (std::vector<int64_t>{0, 7}));
  EXPECT_EQ(balanced_bounds(7, {0.0, 5.0}), (std::vector<int64_t>{0, 4, 7}));
  EXPECT_EQ(balanced_bounds(7, {-1.0, 5.0, 5.0}), (std::vector<int64_t>{0, 3, 5, 7}));
}

TEST(LoadBalance, SpeedsAreAMovingAverageOfRowsPerSecond) {
  std::vector<double> first = updated_speeds({}, {32, 32}, {0.001, 0.002});
  EXPECT_DOUBLE_EQ(first[0], 32000.0);
  EXPECT_DOUBLE_EQ(first[1], 16000.0);
  std::vector<double> next = updated_speeds(first, {40, 24}, {0.001, 0.001});
  EXPECT_DOUBLE_EQ(next[0], 0.7 * 32000.0 + 0.3 * 40000.0);
  EXPECT_DOUBLE_EQ(next[1], 0.7 * 16000.0 + 0.3 * 24000.0);
  std::vector<double> idle = updated_speeds(next, {0, 24}, {0.0, 0.001});
  EXPECT_DOUBLE_EQ(idle[0], next[0]) << "a replica without rows keeps its speed";
}

}  // namespace
}  // namespace gradflow::strategies
