// The NCCL communicator on one rank and one GPU: every op runs through NCCL for real, and with one rank
// each result equals its input (a sum or average of one). Skipped, with the reason, without a GPU.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/creation.h"
#include "core/tensor/device.h"
#include "distributed/comm/communicator.h"
#include "distributed/store/file_store.h"

namespace gradflow::distributed {
namespace {

const Device kGpu = Device::cuda(0);

// Small integers: exact in every dtype under test, f16 and bf16 included.
std::vector<float> pattern(int64_t n, int seed = 0) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>((i * 7 + seed) % 17 - 8);
  return v;
}

Tensor gpu_tensor(const std::vector<float>& values, Shape shape, DType dtype) {
  return from_vector<float>(values, std::move(shape)).to(dtype).to(kGpu);
}

std::vector<float> host_values(const Tensor& t) { return t.to(kCPU).to_vector<float>(); }

class NcclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible: the NCCL tests need a GPU";
    if (!backend_built(Backend::kNccl)) GTEST_SKIP() << "gradflow was built without NCCL";
    std::string dir = (std::filesystem::temp_directory_path() / "gradflow_nccl_XXXXXX").string();
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    auto store = FileStore::create({.path = dir_ + "/store"});
    ASSERT_TRUE(store.ok()) << store.status();
    comm_ = create_communicator({.backend = Backend::kNccl,
                                 .rank = 0,
                                 .size = 1,
                                 .store = std::shared_ptr<Store>(std::move(*store)),
                                 .timeout = std::chrono::seconds(60),
                                 .cuda_device = 0});
    ASSERT_NE(comm_, nullptr);
  }
  void TearDown() override {
    comm_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string dir_;
  std::unique_ptr<Communicator> comm_;
};

TEST_F(NcclTest, Identity) {
  EXPECT_EQ(comm_->rank(), 0);
  EXPECT_EQ(comm_->size(), 1);
  EXPECT_EQ(comm_->backend(), Backend::kNccl);
}

TEST_F(NcclTest, AllReduceEveryDTypeOpAndSize) {
  for (DType dtype : {kF32, kF64, kF16, kBF16, kI32, kI64}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
      if (op == ReduceOp::kAvg && !is_floating(dtype)) continue;  // avg needs a floating dtype
      for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1} << 20}) {
        SCOPED_TRACE(str_cat(dtype_name(dtype), " ", reduce_op_name(op), " n=", n));
        std::vector<float> values = pattern(n);
        std::vector<Tensor> out = comm_->all_reduce({gpu_tensor(values, {n}, dtype)}, {.op = op})->result();
        ASSERT_EQ(out.size(), 1u);
        EXPECT_EQ(out[0].dtype(), dtype);
        EXPECT_EQ(out[0].shape(), (Shape{n}));
        EXPECT_EQ(host_values(out[0]), values);
      }
    }
  }
}

TEST_F(NcclTest, AllReduceCoalescedAndBool) {
  std::vector<float> a = pattern(6, 1), b = pattern(5, 2);
  std::vector<Tensor> out =
      comm_->all_reduce({gpu_tensor(a, {2, 3}, kF32), gpu_tensor(b, {5}, kF32)}, {.op = ReduceOp::kAvg})->result();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].shape(), (Shape{2, 3}));
  EXPECT_EQ(host_values(out[0]), a);
  EXPECT_EQ(host_values(out[1]), b);

  // bool: sum is "or", so one rank's values come back as 0/1, unchanged.
  std::vector<float> bits = {0, 1, 1, 0, 1};
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kMin, ReduceOp::kProd}) {
    SCOPED_TRACE(reduce_op_name(op));
    Tensor r = comm_->all_reduce({gpu_tensor(bits, {5}, kBool)}, {.op = op})->result()[0];
    EXPECT_EQ(r.dtype(), kBool);
    EXPECT_EQ(host_values(r), bits);
  }
}

TEST_F(NcclTest, BroadcastAndReduce) {
  std::vector<float> values = pattern(7, 3);
  Tensor b = comm_->broadcast({gpu_tensor(values, {7}, kF32)}, {.root = 0})->result()[0];
  EXPECT_EQ(host_values(b), values);
  Tensor r = comm_->reduce({gpu_tensor(values, {7}, kBF16)}, {.root = 0, .op = ReduceOp::kSum})->result()[0];
  EXPECT_EQ(r.dtype(), kBF16);
  EXPECT_EQ(host_values(r), values);
}

TEST_F(NcclTest, AllGatherAndAllGatherV) {
  std::vector<float> values = pattern(6, 4);
  Tensor g = comm_->all_gather(gpu_tensor(values, {3, 2}, kF32))->result()[0];
  EXPECT_EQ(g.shape(), (Shape{3, 2}));
  EXPECT_EQ(host_values(g), values);

  std::vector<float> rows = pattern(15, 5);
  Tensor gv = comm_->all_gather_v(gpu_tensor(rows, {5, 3}, kF16))->result()[0];
  EXPECT_EQ(gv.shape(), (Shape{5, 3}));
  EXPECT_EQ(host_values(gv), rows);
}

TEST_F(NcclTest, ReduceScatter) {
  std::vector<float> values = pattern(14, 6);
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg}) {
    SCOPED_TRACE(reduce_op_name(op));
    Tensor r = comm_->reduce_scatter(gpu_tensor(values, {7, 2}, kF32), {.op = op})->result()[0];
    EXPECT_EQ(r.shape(), (Shape{7, 2}));  // one rank gets every row
    EXPECT_EQ(host_values(r), values);
  }
}

TEST_F(NcclTest, AllToAll) {
  std::vector<float> values = pattern(12, 7);
  Tensor equal = comm_->all_to_all(gpu_tensor(values, {4, 3}, kF32))->result()[0];
  EXPECT_EQ(equal.shape(), (Shape{4, 3}));
  EXPECT_EQ(host_values(equal), values);
  Tensor split = comm_->all_to_all(gpu_tensor(values, {4, 3}, kI64), {.input_splits = {4}})->result()[0];
  EXPECT_EQ(host_values(split), values);
}

TEST_F(NcclTest, Barrier) {
  for (int i = 0; i < 3; ++i) EXPECT_NO_THROW(comm_->barrier()->wait());
}

// The communicator stages host tensors through the device; the results are the same.
TEST_F(NcclTest, HostTensorsAreStaged) {
  std::vector<float> values = pattern(7, 8);
  Tensor host = from_vector<float>(values, {7});
  EXPECT_EQ(host_values(comm_->all_reduce({host}, {.op = ReduceOp::kSum})->result()[0]), values);
  EXPECT_EQ(host_values(comm_->all_reduce({host}, {.op = ReduceOp::kAvg})->result()[0]), values);
  EXPECT_EQ(host_values(comm_->broadcast({host})->result()[0]), values);
  EXPECT_EQ(host_values(comm_->all_gather(host)->result()[0]), values);
  EXPECT_EQ(host_values(comm_->reduce_scatter(host)->result()[0]), values);
}

TEST_F(NcclTest, SplitMakesAWorkingCommunicator) {
  std::unique_ptr<Communicator> sub = comm_->split(/*color=*/0, /*key=*/0);
  ASSERT_NE(sub, nullptr);
  EXPECT_EQ(sub->size(), 1);
  std::vector<float> values = pattern(7, 9);
  EXPECT_EQ(host_values(sub->all_reduce({gpu_tensor(values, {7}, kF32)})->result()[0]), values);
  EXPECT_EQ(comm_->split(/*color=*/-1, /*key=*/0), nullptr);
}

TEST_F(NcclTest, AbortFailsLaterOps) {
  comm_->abort("test abort");
  try {
    comm_->all_reduce({gpu_tensor(pattern(3), {3}, kF32)})->wait();  // may throw at the call or the wait
    FAIL() << "all_reduce after abort() succeeded";
  } catch (const CollectiveError& e) {
    EXPECT_EQ(e.kind(), CollectiveFailure::kAborted) << e.what();
  }
}

}  // namespace
}  // namespace gradflow::distributed
