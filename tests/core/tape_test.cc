// GradientTape semantics: watching, variables, persistence, unconnected sources, stop_gradient,
// nested tapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <optional>

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

TEST(Tape, SeparateRecordingHidesTheThreadsTapesAndGivesThemBack) {
  // As on a thread of its own: the outer tape sees nothing of what happens inside, a tape made inside
  // records (also where recording was suspended outside), and afterwards all is as it was.
  Variable w(from_vector<double>({1, -2}), "w");
  GradientTape outer;
  {
    autodiff::SeparateRecording separate;
    EXPECT_FALSE(autodiff::any_tape_recording());
    GradientTape inner;
    Tensor y = sum(square(w));
    EXPECT_EQ(values(inner.gradient(y, {w})[0]), (std::vector<double>{2, -4}));
  }
  EXPECT_TRUE(outer.watched_variables().empty());
  EXPECT_EQ(values(outer.gradient(sum(mul(w, w)), {w})[0]), (std::vector<double>{2, -4}));
  GradientTape another;
  autodiff::SuspendRecording suspended;
  {
    autodiff::SeparateRecording separate;
    GradientTape inner;
    EXPECT_TRUE(autodiff::any_tape_recording());
  }
  EXPECT_FALSE(autodiff::any_tape_recording());
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

// The gradient-ready hook: once per source, with the final gradient, the last layer's before the first
// layer's is even computed, unreached sources first.
TEST(TapeReadyHook, EachSourceOnceWithItsFinalGradientInBackwardOrder) {
  Variable w1(from_vector<double>({0.5, -1, 2, 0.25, 1, -0.5}, {2, 3}), "w1");
  Variable b1(from_vector<double>({0.1, 0.2, -0.3}), "b1");
  Variable w2(from_vector<double>({1, -2, 0.5}, {3, 1}), "w2");
  Variable unused(from_vector<double>({7}), "unused");
  Tensor x = from_vector<double>({1, 2, -1, 0.5}, {2, 2});
  GradientTape tape({.persistent = true});
  // w1 is read twice (two paths), so its gradient is final only after the earlier read's op.
  Tensor h = relu(add(matmul(x, w1.value()), b1.value()));
  Tensor y = sum(add(matmul(h, w2.value()), matmul(x, w1.value()) * 0.5));
  (void)unused.value();
  std::vector<GradSource> sources{w1, b1, w2, unused};
  std::vector<std::pair<size_t, Tensor>> calls;
  std::vector<Tensor> grads = tape.gradient(y, sources, [&](size_t k, const Tensor& g) { calls.emplace_back(k, g); });
  std::vector<Tensor> plain = tape.gradient(y, sources);
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[0].first, 3u);  // unreached: first, undefined
  EXPECT_FALSE(calls[0].second.defined());
  EXPECT_EQ(calls[1].first, 2u);  // w2: its op is the last one recorded on its path
  std::vector<size_t> order;
  for (const auto& [k, g] : calls) order.push_back(k);
  EXPECT_LT(std::find(order.begin(), order.end(), 1u), std::find(order.begin(), order.end(), 0u))
      << "b1 is final before w1 (w1's first read comes earlier)";
  for (const auto& [k, g] : calls) {
    if (k == 3) continue;
    ASSERT_TRUE(g.defined()) << k;
    EXPECT_EQ(values(g), values(grads[k])) << k;
    EXPECT_EQ(values(g), values(plain[k])) << k;
  }
  EXPECT_FALSE(grads[3].defined());
}

TEST(TapeReadyHook, DuplicateSourcesAndTheTargetItself) {
  Tensor x = from_vector<double>({1, 2});
  GradientTape tape;
  tape.watch(x);
  Tensor y = sum(square(x));
  std::vector<size_t> seen;
  std::vector<Tensor> g = tape.gradient(y, {x, y, x}, [&](size_t k, const Tensor& grad) {
    seen.push_back(k);
    EXPECT_TRUE(grad.defined()) << k;
  });
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<size_t>{0, 1, 2}));
  EXPECT_EQ(values(g[0]), (std::vector<double>{2, 4}));
  EXPECT_EQ(values(g[1]), (std::vector<double>{1}));
  EXPECT_EQ(values(g[2]), values(g[0]));
}

// The destination hook: a source's gradient computed whole by one matmul lands in the given tensor (no
// copy), for every transpose; everywhere it would not be safe, the hint is ignored and the gradient is
// still right.
TEST(TapeDestinationHook, MatmulWritesALeafsGradientIntoItsDestination) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      SCOPED_TRACE(str_cat("transpose_a ", ta, ", transpose_b ", tb));
      Tensor a = random_normal(ta ? Shape{4, 3} : Shape{3, 4}, 0, 1, kF64);
      Variable w(random_normal(tb ? Shape{2, 4} : Shape{4, 2}, 0, 1, kF64), "w");
      Variable bias(from_vector<double>({0.5, -0.25}), "bias");
      auto run = [&](const GradientTape::Hooks& hooks) {
        GradientTape tape;
        Tensor y = sum(square(add(matmul(a, w.value(), ta, tb), bias.value())));
        return tape.gradient(y, {w, bias}, hooks);
      };
      std::vector<Tensor> plain = run({});
      Tensor slot = zeros(w.shape(), kF64);
      std::vector<Tensor> ready(2);
      std::vector<size_t> asked;
      std::vector<Tensor> g = run({.on_ready = [&](size_t k, const Tensor& t) { ready[k] = t; },
                                   .destination = [&](size_t k) {
                                     asked.push_back(k);
                                     return k == 0 ? slot : Tensor();
                                   }});
      std::sort(asked.begin(), asked.end());
      EXPECT_EQ(asked, (std::vector<size_t>{0, 1}));
      EXPECT_EQ(g[0].raw_data(), slot.raw_data()) << "written in place";
      EXPECT_EQ(ready[0].raw_data(), slot.raw_data());
      EXPECT_EQ(values(slot), values(plain[0]));
      EXPECT_EQ(values(g[1]), values(plain[1]));
    }
  }
}

TEST(TapeDestinationHook, IgnoredWhereWritingInPlaceWouldBeWrong) {
  Variable w(from_vector<double>({1, 2, 3, 4}, {2, 2}), "w");
  Tensor x = from_vector<double>({1, -1, 0.5, 2}, {2, 2});
  auto check = [&](const std::string& what, const std::function<Tensor()>& loss, bool nested = false) {
    SCOPED_TRACE(what);
    GradientTape plain_tape;
    std::vector<Tensor> plain = plain_tape.gradient(loss(), {w});
    Tensor slot = zeros({2, 2}, kF64);
    std::optional<GradientTape> outer;
    if (nested) outer.emplace();
    GradientTape tape;
    Tensor y = loss();
    std::vector<Tensor> g = tape.gradient(y, {w}, {.destination = [&](size_t) { return slot; }});
    EXPECT_NE(g[0].raw_data(), slot.raw_data());
    EXPECT_EQ(values(g[0]), values(plain[0]));
    EXPECT_EQ(values(slot), (std::vector<double>{0, 0, 0, 0})) << "the destination is left alone";
  };
  // Two reads: the gradient is a sum of two contributions.
  check("read twice", [&] { return sum(add(matmul(x, w.value()), matmul(w.value(), x))); });
  // An enclosing tape records backward: its tensors must not live in the caller's buffer.
  check("enclosing tape", [&] { return sum(square(matmul(x, w.value()))); }, /*nested=*/true);
  // Not a leaf: its gradient flows on to the op that computed it.
  Tensor h;
  GradientTape tape;
  tape.watch(x);
  h = mul(x, x);
  Tensor y = sum(matmul(h, w.value()));
  Tensor slot = zeros({2, 2}, kF64);
  std::vector<Tensor> g = tape.gradient(y, {h, x}, {.destination = [&](size_t k) { return k == 0 ? slot : Tensor(); }});
  EXPECT_NE(g[0].raw_data(), slot.raw_data());
  EXPECT_EQ(values(slot), (std::vector<double>{0, 0, 0, 0}));
  EXPECT_EQ(values(g[1]), (std::vector<double>{2 * 1 * 3, -2 * 7, 2 * 0.5 * 3, 2 * 2 * 7}));
}

// A destination of another shape or dtype than the gradient is ignored too.
TEST(TapeDestinationHook, MismatchedDestinationIsIgnored) {
  Variable w(from_vector<double>({1, 2, 3, 4}, {2, 2}), "w");
  Tensor x = from_vector<double>({1, -1, 0.5, 2}, {2, 2});
  for (Tensor slot : {zeros({4}, kF64), zeros({2, 2}, kF32), zeros({2, 4}, kF64).slice(1, 0, 2)}) {
    GradientTape tape;
    Tensor y = sum(matmul(x, w.value()));
    std::vector<Tensor> g = tape.gradient(y, {w}, {.destination = [&](size_t) { return slot; }});
    EXPECT_NE(g[0].raw_data(), slot.raw_data());
    EXPECT_EQ(values(g[0]), (std::vector<double>{1.5, 1.5, 1, 1}));
  }
}

// Gradient functions learn which inputs need a gradient: only those on a path from a source. A probe op
// (the identity on its first input) records what its gradient function was told.
uint64_t probe_needed = 0;
TensorList probe_kernel(const TensorList& in, const Attrs&, const MetaList&) {
  Tensor out = empty(in[0].shape(), in[0].dtype());
  std::memcpy(out.raw_data(), in[0].contiguous().raw_data(), in[0].numel() * dtype_size(in[0].dtype()));
  return {out};
}
const OpDef& probe_op() {
  static const OpDef& op = [] () -> const OpDef& {
    OpDef def{.name = "tape_test_probe",
              .infer = [](const TensorList& in, const Attrs&) { return MetaList{TensorMeta{in[0].shape(), in[0].dtype()}}; },
              .grad = [](const GradContext& c) {
                probe_needed = c.needed;
                return TensorList{c.grad_outputs[0], Tensor(), Tensor()};
              }};
    def.kernels[static_cast<size_t>(DeviceType::kCPU)] = probe_kernel;
    return OpRegistry::global().define(std::move(def));
  }();
  return op;
}

TEST(Tape, GradientFunctionsAreToldWhichInputsNeedAGradient) {
  Tensor x = from_vector<double>({1, 2});
  Tensor z = from_vector<double>({3, 4});
  Tensor constant = from_vector<double>({5, 6});
  GradientTape tape;
  tape.watch(x);
  tape.watch(z);
  Tensor tracked_elsewhere = square(z);  // recorded, but z is not a source below
  Tensor y = sum(run_op1(probe_op(), {x, tracked_elsewhere, constant}));
  std::vector<Tensor> g = tape.gradient(y, {x});
  EXPECT_EQ(probe_needed, 0b001u) << "only x lies on a path from the source";
  EXPECT_EQ(values(g[0]), (std::vector<double>{1, 1}));
}

// matmul skips the side no source needs (the first layer's data) and gets the other side right, for
// every transpose combination.
TEST(Tape, MatmulGradientOfOneSideMatchesBothSides) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      Tensor a = random_normal(ta ? Shape{4, 3} : Shape{3, 4}, 0, 1, kF64);
      Tensor b = random_normal(tb ? Shape{2, 4} : Shape{4, 2}, 0, 1, kF64);
      auto grads = [&](bool watch_a, bool watch_b) {
        GradientTape tape;
        if (watch_a) tape.watch(a);
        if (watch_b) tape.watch(b);
        Tensor y = sum(square(matmul(a, b, ta, tb)));
        return tape.gradient(y, {a, b});
      };
      std::vector<Tensor> both = grads(true, true), only_a = grads(true, false), only_b = grads(false, true);
      SCOPED_TRACE(str_cat("transpose_a ", ta, ", transpose_b ", tb));
      ASSERT_TRUE(both[0].defined() && both[1].defined());
      EXPECT_EQ(values(only_a[0]), values(both[0]));
      EXPECT_FALSE(only_a[1].defined());
      EXPECT_FALSE(only_b[0].defined());
      EXPECT_EQ(values(only_b[1]), values(both[1]));
    }
  }
}

TEST(Variable, MirrorsAreReplicasOwnCopiesThatFollowWritesOutsideTheReplicas) {
  using V = std::vector<float>;
  Variable v(from_vector<float>({1, 2}), "v");
  v.mirror_on({kCPU, kCPU});
  const void* primary = v.value_unwatched().raw_data();
  const uint64_t primary_id = v.id();
  auto on_replica_1 = [&] {
    MirrorReplicaScope replica(1);
    return v.value_unwatched().to_vector<float>();
  };
  {
    MirrorReplicaScope replica(1);
    EXPECT_NE(v.value_unwatched().raw_data(), primary);
    EXPECT_NE(v.id(), primary_id);  // a tensor of its own: a tape on this thread tracks the copy
  }
  EXPECT_EQ(on_replica_1(), (V{1, 2}));
  v.assign(from_vector<float>({3, 4}));  // outside the replicas: every copy
  EXPECT_EQ(on_replica_1(), (V{3, 4}));
  {
    DeferMirrorRefresh later;  // an optimizer's update: the copies follow once, at the end
    v.assign(from_vector<float>({5, 6}));
    EXPECT_EQ(on_replica_1(), (V{3, 4}));
  }
  v.refresh_mirrors();
  EXPECT_EQ(on_replica_1(), (V{5, 6}));
  {
    MirrorReplicaScope replica(1);  // a replica writes its own copy only
    v.assign(from_vector<float>({7, 8}));
  }
  EXPECT_EQ(v.value_unwatched().to_vector<float>(), (V{5, 6}));
  EXPECT_EQ(on_replica_1(), (V{7, 8}));
  {
    MirrorReplicaScope replica(2);  // copies were made for 2 replicas
    EXPECT_THROW(v.value_unwatched(), StateError);
  }
  {
    MirrorReplicaScope replica(0);  // the others may be reading the copies
    EXPECT_THROW(v.mirror_on({kCPU, kCPU}), StateError);
  }
  EXPECT_THROW(v.mirror_on({Device::cuda(0), kCPU}), DeviceError);  // replica 0 must hold the variable
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
