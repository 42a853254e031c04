// MirroredStrategy over devices with a GPU among them: one replica on cuda:0 and one on the CPU, each
// with its own copies of the variables, train as one replica with the global batch (up to float
// summation order: cuBLAS against oneDNN). SKIPPED without a CUDA device; with two GPUs, cuda:0 and
// cuda:1 too.
#include <gtest/gtest.h>

#include "strategies/mirrored.h"
#include "tests/strategies/replica_checks.h"

namespace gradflow::strategies {
namespace {

Sequential make_model() {
  Sequential model({Dense(16, {.activation = "relu", .input_shape = Shape{8}}), Dense(4, {.activation = "softmax"})});
  // SGD: Adam's m / sqrt(v) would magnify summation-order differences (cuBLAS against oneDNN).
  model.compile(std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 0.3}),
                "sparse_categorical_crossentropy", {"accuracy"});
  return model;
}

void expect_like_one_replica(const std::vector<Device>& devices) {
  Tensor x = random_uniform({8 * 2 * 4 + 3, 8}, -1, 1, kF32, kCPU, 71);
  Tensor y = random_uniform({8 * 2 * 4 + 3}, 0, 4, kF32, kCPU, 72).to(kI64);
  set_seed(3);
  reset_layer_names();
  MirroredStrategy strategy(devices);
  Logs mirrored_eval;
  std::vector<Variable> mirrored_vars;
  {
    auto scope = strategy.scope();
    Sequential model = make_model();
    for (const Variable& v : model.variables()) EXPECT_EQ(v.device(), devices[0]) << v.name();
    model.fit(x, y, {.epochs = 2, .batch_size = 8, .shuffle = false, .verbose = 0});
    mirrored_eval = model.evaluate(x, y);
    mirrored_vars = model.variables();
  }
  set_seed(3);
  reset_layer_names();
  Sequential single = make_model();
  single.fit(x, y, {.epochs = 2, .batch_size = 16, .shuffle = false, .verbose = 0});
  EXPECT_LT(testing::max_relative_difference(mirrored_vars, single.variables()), 1e-4);
  EXPECT_NEAR(mirrored_eval["loss"], single.evaluate(x, y)["loss"], 1e-4);
  for (const Variable& v : mirrored_vars) {
    ASSERT_TRUE(v.mirrored());
    MirrorReplicaScope replica_1(1);
    EXPECT_EQ(v.value_unwatched().device(), devices[1]) << v.name();
  }
}

TEST(MirroredCuda, AGpuAndTheCpuTrainAsOneReplica) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  expect_like_one_replica({Device::cuda(0), kCPU});
}

TEST(MirroredCuda, TwoGpusTrainAsOneReplica) {
  if (cuda_device_count() < 2) GTEST_SKIP() << "fewer than two CUDA devices";
  expect_like_one_replica({Device::cuda(0), Device::cuda(1)});
}

}  // namespace
}  // namespace gradflow::strategies
