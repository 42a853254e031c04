// MirroredStrategy over devices with a GPU among them: one replica on cuda:0 and one on the CPU, each
// with its own copies of the variables, train as one replica with the global batch (up to float
// summation order: cuBLAS against oneDNN). SKIPPED without a CUDA device; with two GPUs, cuda:0 and
// cuda:1 too, summed by NCCL and by device copies. The local NCCL group itself: its sums, broadcast and
// errors on the GPUs there are (one or more).
#include <gtest/gtest.h>

#include "distributed/comm/local_device_group.h"
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

// The variables after two epochs of fit under MirroredStrategy(devices, ops).
std::vector<Tensor> trained_with(const std::vector<Device>& devices, CrossDeviceOps ops, CrossDeviceOps expected) {
  Tensor x = random_uniform({8 * 2 * 4 + 3, 8}, -1, 1, kF32, kCPU, 71);
  Tensor y = random_uniform({8 * 2 * 4 + 3}, 0, 4, kF32, kCPU, 72).to(kI64);
  set_seed(3);
  reset_layer_names();
  MirroredStrategy strategy(devices, ops);
  EXPECT_EQ(strategy.cross_device_ops(), expected);
  auto scope = strategy.scope();
  Sequential model = make_model();
  model.fit(x, y, {.epochs = 2, .batch_size = 8, .shuffle = false, .verbose = 0});
  std::vector<Tensor> values;
  for (const Variable& v : model.variables()) values.push_back(v.value_unwatched().to(kCPU));
  return values;
}

// The variables after one epoch of a custom loop (strategy.run, strategy.gradient) under
// MirroredStrategy(devices, ops): the cross-replica sums of the replica threads.
std::vector<Tensor> custom_loop_with(const std::vector<Device>& devices, CrossDeviceOps ops) {
  Tensor x = random_uniform({8 * 2 * 4 + 3, 8}, -1, 1, kF32, kCPU, 71);
  Tensor y = random_uniform({8 * 2 * 4 + 3}, 0, 4, kF32, kCPU, 72).to(kI64);
  set_seed(3);
  reset_layer_names();
  MirroredStrategy strategy(devices, ops);
  auto scope = strategy.scope();
  Sequential model = make_model();
  {
    autodiff::SuspendRecording build;  // built before the replica threads share it
    model(x.slice(0, 0, 1));
  }
  strategy.broadcast_variables(model.variables());
  losses::SparseCategoricalCrossentropy loss_fn;
  optimizers::SGD sgd({.learning_rate = 0.3});
  std::vector<Variable> vars = model.trainable_variables();
  for (const Element& e : strategy.distribute_dataset(Dataset::from_tensor_slices({x, y}).batch(8))) {
    strategy.run(
        [&](const Tensor& xb, const Tensor& yb) {
          GradientTape tape;
          Tensor loss = loss_fn(yb, model(xb, true));
          sgd.apply_gradients(strategy.gradient(tape, loss, vars), vars);
          return loss;
        },
        e[0], e[1]);
  }
  std::vector<Tensor> values;
  for (const Variable& v : model.variables()) values.push_back(v.value_unwatched().to(kCPU));
  return values;
}

void expect_bitwise_equal(const std::vector<Tensor>& a, const std::vector<Tensor>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].to_vector<float>(), b[i].to_vector<float>()) << what << ", variable " << i;
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

// NCCL's sums and the device copies' agree bitwise: with one GPU a sum is the value itself, with two a
// single addition either way.
TEST(MirroredCuda, NcclAndDeviceCopiesTrainAlike) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  if (!distributed::local_device_group_built()) GTEST_SKIP() << "built without NCCL";
  std::vector<Device> devices{Device::cuda(0)};
  if (cuda_device_count() >= 2) devices.push_back(Device::cuda(1));
  // kAuto takes NCCL from two GPUs on (one GPU has nothing to sum); kNcclAllReduce forces it.
  EXPECT_EQ(MirroredStrategy({Device::cuda(0)}).cross_device_ops(), CrossDeviceOps::kReductionToOneDevice);
  if (devices.size() > 1) EXPECT_EQ(MirroredStrategy(devices).cross_device_ops(), CrossDeviceOps::kNcclAllReduce);
  expect_bitwise_equal(trained_with(devices, CrossDeviceOps::kNcclAllReduce, CrossDeviceOps::kNcclAllReduce),
                       trained_with(devices, CrossDeviceOps::kReductionToOneDevice, CrossDeviceOps::kReductionToOneDevice),
                       "fit");
  expect_bitwise_equal(custom_loop_with(devices, CrossDeviceOps::kNcclAllReduce),
                       custom_loop_with(devices, CrossDeviceOps::kReductionToOneDevice), "custom loop");
}

TEST(MirroredCuda, LocalDeviceGroupSumsAndBroadcasts) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  if (!distributed::local_device_group_built()) GTEST_SKIP() << "built without NCCL";
  std::vector<int> gpus;
  for (int d = 0; d < std::min(cuda_device_count(), 4); ++d) gpus.push_back(d);
  std::unique_ptr<distributed::LocalDeviceGroup> group = distributed::make_local_device_group(gpus);
  ASSERT_EQ(group->devices(), gpus);
  std::vector<Tensor> values;
  Tensor expected = zeros({5, 3});
  for (size_t i = 0; i < gpus.size(); ++i) {
    Tensor v = random_uniform({5, 3}, -1, 1, kF32, kCPU, 90 + i);
    expected = expected + v;
    values.push_back(v.to(Device::cuda(gpus[i])));
  }
  std::vector<Tensor> sums = group->all_reduce_sum(values);
  ASSERT_EQ(sums.size(), gpus.size());
  for (size_t i = 0; i < gpus.size(); ++i) {
    EXPECT_EQ(sums[i].device(), Device::cuda(gpus[i]));
    EXPECT_LT(max(abs(sums[i].to(kCPU) - expected)).item(), 1e-6) << "member " << i;
  }
  // Odd sizes and integers too; broadcast in place from the last member.
  std::vector<Tensor> counts;
  for (size_t i = 0; i < gpus.size(); ++i) counts.push_back(full({7}, static_cast<double>(i + 1), kI64, Device::cuda(gpus[i])));
  std::vector<Tensor> count_sums = group->all_reduce_sum(counts);
  const int64_t n = static_cast<int64_t>(gpus.size());
  EXPECT_EQ(count_sums[0].to(kCPU).to_vector<int64_t>(), std::vector<int64_t>(7, n * (n + 1) / 2));
  group->broadcast(counts, static_cast<int>(n - 1));
  for (const Tensor& c : counts) EXPECT_EQ(c.to(kCPU).to_vector<int64_t>(), std::vector<int64_t>(7, n));
  // A value on the wrong device, a mismatched shape, bools, a device listed twice: errors naming them.
  std::vector<Tensor> on_cpu = values;
  on_cpu[0] = values[0].to(kCPU);
  EXPECT_THROW(group->all_reduce_sum(on_cpu), ValueError);
  std::vector<Tensor> reshaped = values;
  reshaped[0] = values[0].reshape({15});
  if (gpus.size() > 1) EXPECT_THROW(group->all_reduce_sum(reshaped), ValueError);
  std::vector<Tensor> bools;
  for (int d : gpus) bools.push_back(full({2}, 1, kBool, Device::cuda(d)));
  EXPECT_THROW(group->all_reduce_sum(bools), ValueError);
  // reduce_sum: a list per member, onto one member.
  std::vector<std::vector<Tensor>> lists;
  for (size_t i = 0; i < gpus.size(); ++i) lists.push_back({values[i], counts[i]});
  std::vector<Tensor> reduced = group->reduce_sum(lists, 0);
  ASSERT_EQ(reduced.size(), 2u);
  EXPECT_EQ(reduced[0].device(), Device::cuda(gpus[0]));
  EXPECT_LT(max(abs(reduced[0].to(kCPU) - expected)).item(), 1e-6);
  EXPECT_EQ(reduced[1].to(kCPU).to_vector<int64_t>(), std::vector<int64_t>(7, n * n));
  EXPECT_THROW(group->reduce_sum(lists, static_cast<int>(n)), ValueError);
  EXPECT_THROW(distributed::make_local_device_group({0, 0}), ValueError);
  EXPECT_THROW(distributed::make_local_device_group({cuda_device_count()}), DeviceError);
}

}  // namespace
}  // namespace gradflow::strategies
