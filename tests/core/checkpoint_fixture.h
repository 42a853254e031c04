// What the checkpoint tests share: a fresh directory for each test (named after the suite and the
// process), 64 examples of 6 features in 3 classes, a few training steps on them, and a model's weights
// for bitwise comparisons.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/gradflow.h"

namespace gradflow::testing {

class CheckpointFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string suite = ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name();
    dir_ = (std::filesystem::temp_directory_path() / ("gradflow_" + suite + "_" + std::to_string(::getpid()))).string();
    std::filesystem::remove_all(dir_);
    x_ = random_uniform({64, 6}, -1, 1, kF32, kCPU, 1);
    y_ = random_uniform({64}, 0, 3, kF32, kCPU, 2).to(kI64);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // `steps` train_steps on batches of 16, cycling through the 64 examples.
  void train(Sequential& m, int steps) {
    for (int s = 0; s < steps; ++s) {
      train_step(m.impl(), x_.slice(0, s % 4 * 16, s % 4 * 16 + 16), y_.slice(0, s % 4 * 16, s % 4 * 16 + 16));
    }
  }
  static std::vector<std::vector<float>> weights(Sequential& m) {
    std::vector<std::vector<float>> out;
    for (const Variable& v : m.variables()) out.push_back(v.value_unwatched().reshape({-1}).to_vector<float>());
    return out;
  }

  std::string dir_;
  Tensor x_, y_;
};

}  // namespace gradflow::testing
