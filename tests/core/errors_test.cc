// Every mismatch class throws a gradflow::Error subclass whose message names the op and the values.
#include <gtest/gtest.h>

#include "core/gradflow.h"

namespace gradflow {
namespace {

template <typename E, typename F>
void expect_error(F&& f, const std::string& message) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected: " << message;
  } catch (const E& e) {
    EXPECT_EQ(std::string(e.what()), message);
  }
}

TEST(Errors, ShapeMismatches) {
  expect_error<ShapeError>([] { matmul(zeros({32, 784}), zeros({128, 10})); },
                           "matmul: [32,784] x [128,10]: inner dimensions 784 and 128 differ");
  expect_error<ShapeError>([] { add(zeros({2, 3}), zeros({4})); },
                           "add: shapes [2,3] and [4] cannot be broadcast (dimension 3 vs 4)");
  expect_error<ShapeError>([] { zeros({6}).reshape({4, -1}); },
                           "reshape: cannot reshape [6] (6 elements) into [4,-1]");
  expect_error<ShapeError>([] { concat({zeros({2, 3}), zeros({3, 3})}, 1); },
                           "concat: tensor 1 has shape [3,3], incompatible with [2,3] along axis 1");
  expect_error<ShapeError>(
      [] { sparse_softmax_cross_entropy_with_logits(zeros({4}, kI32), zeros({3, 10})); },
      "sparse_softmax_cross_entropy_with_logits: labels [4] and logits [3,10] must be [batch] and [batch, classes] "
      "with the same batch");
  expect_error<ShapeError>([] { zeros({3}).expand({2, 2}); },
                           "broadcast_to: shapes [3] and [2,2] cannot be broadcast (dimension 3 vs 2)");
  expect_error<ShapeError>([] { matmul(zeros({3}), zeros({2})); },
                           "matmul: [1,3] x [2,1]: inner dimensions 3 and 2 differ");
}

TEST(Errors, DTypeMismatches) {
  expect_error<DTypeError>([] { add(zeros({2}), zeros({2}, kF64)); },
                           "add: dtypes differ (f32 and f64); convert one with .to(dtype)");
  expect_error<DTypeError>([] { exp(zeros({2}, kI32)); }, "exp: expected a floating-point tensor, got i32");
  expect_error<DTypeError>([] { matmul(zeros({2, 2}, kI64), zeros({2, 2}, kI64)); },
                           "matmul: expected a floating-point tensor, got i64");
  expect_error<DTypeError>([] { where(zeros({2}), zeros({2}), zeros({2})); },
                           "where: the condition must be bool, got f32");
  expect_error<DTypeError>([] { gather(zeros({2}), zeros({1})); }, "gather: indices must be integers, got f32");
  expect_error<DTypeError>([] { zeros({2}).data<double>(); }, "data<f64>() on a tensor of dtype f32");
}

TEST(Errors, DeviceMismatches) {
  if (!cuda_built()) {
    expect_error<DeviceError>([] { zeros({2}, kF32, Device::cuda(0)); },
                              "device cuda:0 requested but gradflow was built without CUDA");
  } else if (cuda_device_count() == 0) {
    EXPECT_THROW(zeros({2}, kF32, Device::cuda(0)), DeviceError);
  } else {
    expect_error<DeviceError>([] { add(zeros({2}), zeros({2}, kF32, Device::cuda(0))); },
                              "add: inputs are on different devices (cpu and cuda:0)");
  }
}

TEST(Errors, BadValues) {
  expect_error<ValueError>([] { sum(zeros({2, 3}), {2}); }, "sum: axis 2 is out of range for a tensor of rank 2");
  expect_error<ValueError>([] { gather(zeros({3, 2}), from_vector<int64_t>({0, 3})); },
                           "gather: index 3 at position 1 is outside [0, 3)");
  expect_error<ValueError>(
      [] { sparse_softmax_cross_entropy_with_logits(from_vector<int32_t>({1, 10}), zeros({2, 10})); },
      "sparse_softmax_cross_entropy_with_logits: label 10 at position 1 is outside [0, 10)");
  expect_error<ValueError>([] { dropout(zeros({2}), 1.0); }, "dropout: rate 1 is not in [0, 1)");
  expect_error<ValueError>([] { max(zeros({0})); }, "max: cannot reduce an empty dimension (axis 0 of [0])");
  expect_error<ValueError>([] { clip(zeros({1}), 2, 1); }, "clip: lower bound 2 is above upper bound 1");
  expect_error<ValueError>([] { zeros({2}).slice(0, 0, 1, 0); }, "slice: step must not be 0");
}

TEST(Errors, UndefinedTensorsAndTapeMisuse) {
  expect_error<StateError>([] { add(Tensor(), zeros({1})); }, "add: an input tensor is undefined");
  expect_error<StateError>([] { Variable().value(); }, "use of an uninitialised Variable");
}

TEST(Errors, AllAreGradflowErrors) {
  EXPECT_THROW(matmul(zeros({2, 3}), zeros({2, 3})), Error);
  EXPECT_THROW(throw_status(absl::DataLossError("x.safetensors: truncated")), Error);
  EXPECT_THROW(throw_status(absl::InvalidArgumentError("bad")), ValueError);
}

}  // namespace
}  // namespace gradflow
