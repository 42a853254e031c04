// GradientTape semantics: watching, variables, persistence, unconnected sources, stop_gradient,
// nested tapes.
#include <gtest/gtest.h>

#include "core/gradflow.h"

namespace gradflow {
namespace {

std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }
Tensor sin_free_cubic(const Tensor& x) { return square(square(x)); }  // x^4

TEST(Tape, WatchedTensorGradient) {
  Tensor x = from_vector<double>({1, 2, 3});
  GradientTape tape;
  tape.watch(x);
  Tensor y = sum(mul(x, x));
  EXPECT_EQ(values(tape.gradient(y, {x})[0]), (std::vector<double>{2, 4, 6}));
}

TEST(Tape, UnwatchedTensorsAreNotRecorded) {
  Tensor x = from_vector<double>({1, 2});
  GradientTape tape;
  Tensor y = sum(square(x));
  std::vector<Tensor> g = tape.gradient(y, {x});
  ASSERT_EQ(g.size(), 1u);
  EXPECT_FALSE(g[0].defined());
}

TEST(Tape, TrainableVariablesAreWatchedOnRead) {
  Variable w(from_vector<double>({1, -2}), "w");
  Variable frozen(from_vector<double>({3, 4}), "frozen", /*trainable=*/false);
  GradientTape tape;
  Tensor y = sum(mul(w, frozen));
  std::vector<Tensor> g = tape.gradient(y, {w, frozen});
  EXPECT_EQ(values(g[0]), (std::vector<double>{3, 4}));
  EXPECT_FALSE(g[1].defined());
  ASSERT_EQ(tape.watched_variables().size(), 1u);
  EXPECT_EQ(tape.watched_variables()[0].name(), "w");
}

TEST(Tape, WatchAccessedVariablesOff) {
  Variable w(from_vector<double>({1, 2}), "w");
  GradientTape tape(TapeOptions{.watch_accessed_variables = false});
  Tensor y = sum(square(w));
  EXPECT_FALSE(tape.gradient(y, {w})[0].defined());
}

TEST(Tape, UnconnectedSourceIsEmptyNotAnError) {
  Tensor x = from_vector<double>({1, 2});
  Tensor z = from_vector<double>({5});
  GradientTape tape;
  tape.watch(x);
  tape.watch(z);
  Tensor y = sum(exp(x));
  std::vector<Tensor> g = tape.gradient(y, {x, z});
  EXPECT_TRUE(g[0].defined());
  EXPECT_FALSE(g[1].defined());
  EXPECT_THROW(g[1].shape(), StateError);
}

TEST(Tape, NonPersistentTapeAllowsOneGradient) {
  Tensor x = from_vector<double>({2});
  GradientTape tape;
  tape.watch(x);
  Tensor y = square(x);
  tape.gradient(y, {x});
  EXPECT_THROW(tape.gradient(y, {x}), StateError);
}

TEST(Tape, PersistentTapeAllowsMany) {
  Tensor x = from_vector<double>({3});
  GradientTape tape(TapeOptions{.persistent = true});
  tape.watch(x);
  Tensor y = square(x);
  Tensor z = mul(y, x);
  EXPECT_DOUBLE_EQ(tape.gradient(y, {x})[0].item(), 6);
  EXPECT_DOUBLE_EQ(tape.gradient(z, {x})[0].item(), 27);
  EXPECT_DOUBLE_EQ(tape.gradient(z, {y})[0].item(), 3);
}

TEST(Tape, GradientAccumulatesOverPaths) {
  Tensor x = from_vector<double>({2});
  GradientTape tape;
  tape.watch(x);
  Tensor y = add(mul(x, x), add(x, x));  // x^2 + 2x
  EXPECT_DOUBLE_EQ(tape.gradient(y, {x})[0].item(), 6);
}

TEST(Tape, OutputGradientWeightsTheTarget) {
  Tensor x = from_vector<double>({1, 2});
  GradientTape tape;
  tape.watch(x);
  Tensor y = mul(x, scalar(3, kF64));
  EXPECT_EQ(values(tape.gradient(y, {x}, from_vector<double>({1, 10}))[0]), (std::vector<double>{3, 30}));
}

TEST(Tape, StopGradientBlocksThePath) {
  Tensor x = from_vector<double>({2});
  GradientTape tape;
  tape.watch(x);
  Tensor y = add(mul(x, x), stop_gradient(mul(x, x)));
  EXPECT_DOUBLE_EQ(tape.gradient(y, {x})[0].item(), 4);
  EXPECT_DOUBLE_EQ(y.item(), 8);
}

TEST(Tape, StopRecordingPauses) {
  Tensor x = from_vector<double>({2});
  GradientTape tape;
  tape.watch(x);
  Tensor y = square(x);
  Tensor z;
  {
    auto pause = tape.stop_recording();
    z = mul(y, x);
  }
  EXPECT_FALSE(tape.gradient(z, {x})[0].defined());
}

TEST(Tape, NestedTapesGiveSecondDerivatives) {
  Tensor x = from_vector<double>({2});
  GradientTape outer;
  outer.watch(x);
  Tensor dy;
  {
    GradientTape inner;
    inner.watch(x);
    Tensor y = mul(x, mul(x, x));  // x^3
    dy = inner.gradient(y, {x})[0];  // 3x^2 = 12
  }
  EXPECT_DOUBLE_EQ(dy.item(), 12);
  EXPECT_DOUBLE_EQ(outer.gradient(dy, {x})[0].item(), 12);  // 6x
}

TEST(Tape, ThirdDerivativeThroughThreeTapes) {
  Tensor x = from_vector<double>({0.5});
  GradientTape t3;
  t3.watch(x);
  Tensor d2;
  {
    GradientTape t2;
    t2.watch(x);
    Tensor d1;
    {
      GradientTape t1;
      t1.watch(x);
      d1 = t1.gradient(sin_free_cubic(x), {x})[0];
    }
    d2 = t2.gradient(d1, {x})[0];
  }
  EXPECT_DOUBLE_EQ(t3.gradient(d2, {x})[0].item(), 24 * 0.5);  // d3/dx3 of x^4 = 24x
}

TEST(Variable, AssignKeepsIdentityAndChecksShape) {
  Variable v(zeros({2}, kF64), "v");
  uint64_t id = v.id();
  v.assign(from_vector<double>({1, 2}));
  v.assign_add(from_vector<double>({1, 1}));
  v.assign_sub(from_vector<double>({0.5, 0.5}));
  EXPECT_EQ(values(v.value()), (std::vector<double>{1.5, 2.5}));
  EXPECT_EQ(v.id(), id);
  EXPECT_THROW(v.assign(zeros({3}, kF64)), ShapeError);
  EXPECT_THROW(v.assign(zeros({2}, kF32)), ShapeError);
  Variable copy = v;  // a handle to the same variable
  copy.assign(zeros({2}, kF64));
  EXPECT_EQ(values(v.value()), (std::vector<double>{0, 0}));
}

TEST(Variable, DoesNotAliasItsInitialValue) {
  Tensor init = from_vector<double>({1, 2});
  Variable v(init, "v");
  v.assign(from_vector<double>({5, 6}));
  EXPECT_EQ(values(init), (std::vector<double>{1, 2}));
}

}  // namespace
}  // namespace gradflow
