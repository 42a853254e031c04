// half_reduce: the 16-bit float reductions MPI and Gloo use must round exactly as gradflow's own f16/bf16
// conversions do (nearest even), on the vectorised path and the scalar tail alike, for ordinary values,
// subnormals, overflow to infinity, infinities and NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "distributed/comm/half_reduce.h"

namespace gradflow::distributed {
namespace {

template <typename H>
std::vector<uint16_t> bits_of(const std::vector<float>& values) {
  std::vector<uint16_t> out;
  for (float v : values) out.push_back(H(v).bits);
  return out;
}

template <typename H>
float value_of(uint16_t bits) {
  H h;
  h.bits = bits;
  return static_cast<float>(h);
}

template <typename H>
void check_against_scalar(DType dtype) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> uniform(-4, 4);
  std::vector<float> a, b;
  for (int i = 0; i < 1003; ++i) {  // not a multiple of 8: the scalar tail runs too
    a.push_back(uniform(gen));
    b.push_back(uniform(gen));
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float special : {0.0f, -0.0f, 6e-8f, 1e-7f, 3e-5f, 60000.0f, 65504.0f, 1e30f, inf, -inf}) {
    a.push_back(special);
    b.push_back(special);
  }
  a.push_back(std::nanf(""));
  b.push_back(1.0f);
  std::vector<uint16_t> x = bits_of<H>(a), y = bits_of<H>(b);
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kProd, ReduceOp::kMin, ReduceOp::kMax}) {
    half_reduce::Fn fn = half_reduce::function_for(dtype, op);
    ASSERT_NE(fn, nullptr);
    std::vector<uint16_t> out(x.size());
    fn(out.data(), x.data(), y.data(), x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      float u = value_of<H>(x[i]), v = value_of<H>(y[i]);
      float r = op == ReduceOp::kSum ? u + v : op == ReduceOp::kProd ? u * v : op == ReduceOp::kMin ? std::min(u, v) : std::max(u, v);
      if (std::isnan(u) || std::isnan(v)) {
        if (op == ReduceOp::kSum || op == ReduceOp::kProd) {
          EXPECT_TRUE(std::isnan(value_of<H>(out[i]))) << i;
        }
        continue;  // min/max with NaN: either operand, as the hardware picks
      }
      EXPECT_EQ(out[i], H(r).bits) << dtype_name(dtype) << " " << reduce_op_name(op) << " element " << i << ": " << u
                                   << " and " << v;
    }
  }
  // In place (out aliasing a), as MPI's user functions and Gloo call it.
  std::vector<uint16_t> acc = x;
  half_reduce::function_for(dtype, ReduceOp::kSum)(acc.data(), acc.data(), y.data(), acc.size());
  std::vector<uint16_t> separate(x.size());
  half_reduce::function_for(dtype, ReduceOp::kSum)(separate.data(), x.data(), y.data(), x.size());
  EXPECT_EQ(acc, separate);
}

TEST(HalfReduce, F16RoundsAsGradflowDoes) { check_against_scalar<Half>(kF16); }
TEST(HalfReduce, BF16RoundsAsGradflowDoes) { check_against_scalar<BFloat16>(kBF16); }

TEST(HalfReduce, OnlySixteenBitFloatsAndRealOps) {
  EXPECT_EQ(half_reduce::function_for(kF32, ReduceOp::kSum), nullptr);
  EXPECT_EQ(half_reduce::function_for(kF16, ReduceOp::kAvg), nullptr);
}

}  // namespace
}  // namespace gradflow::distributed
