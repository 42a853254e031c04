// Optimizers against independent scalar recurrences in double, for a few steps, on both update paths:
// the fused host loop (contiguous f32/f64) and the op-based path (here reached with strided gradients).
// Also schedules, clipping, weight decay, skipped gradients, slot variables and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "core/gradflow.h"
#include "core/optim/optim.h"

namespace gradflow {
namespace {

using namespace optimizers;

const std::vector<double> kInitial = {0.5, -1.0, 2.0};
const std::vector<std::vector<double>> kGrads = {{0.1, -0.2, 0.3}, {-0.4, 0.5, 0.05}, {0.2, 0.2, -0.6}};

enum class Path { kFused, kOps };

// A gradient with these values: contiguous, or a strided view (which sends the update down the op path).
Tensor gradient(const std::vector<double>& values, DType dtype, Path path) {
  if (path == Path::kFused) return from_vector<double>(values).to(dtype);
  std::vector<double> spread;
  for (double v : values) spread.insert(spread.end(), {v, 99.0});
  Tensor strided = from_vector<double>(spread).to(dtype).slice(0, 0, static_cast<int64_t>(spread.size()), 2);
  EXPECT_FALSE(strided.is_contiguous());
  return strided;
}

// The variable's values after one apply_gradients per entry of grads.
std::vector<double> train(Optimizer& opt, DType dtype, Path path, const std::vector<std::vector<double>>& grads = kGrads) {
  Variable w(from_vector<double>(kInitial).to(dtype), "w");
  for (const auto& g : grads) opt.apply_gradients({gradient(g, dtype, path)}, {w});
  EXPECT_EQ(opt.iterations(), static_cast<int64_t>(grads.size()));
  return w.value_unwatched().to_vector<double>();
}

// One element's update in double: (w, g, state, t) -> new w; state starts zeroed (8 slots).
using Recurrence = std::function<double(double w, double g, double* s, int t)>;

std::vector<double> reference(const Recurrence& step, const std::vector<std::vector<double>>& grads = kGrads,
                              double initial_state = 0) {
  std::vector<double> out;
  for (size_t i = 0; i < kInitial.size(); ++i) {
    double w = kInitial[i], s[8];
    std::fill(std::begin(s), std::end(s), initial_state);
    for (size_t t = 0; t < grads.size(); ++t) w = step(w, grads[t][i], s, static_cast<int>(t + 1));
    out.push_back(w);
  }
  return out;
}

void expect_near(const std::vector<double>& got, const std::vector<double>& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol * std::max(1.0, std::abs(want[i]))) << what << " [" << i << "]";
}

// Checks an optimizer made by `make` against `want` on every path and float dtype.
void check_all_paths(const std::function<std::unique_ptr<Optimizer>()>& make, const std::vector<double>& want) {
  for (Path path : {Path::kFused, Path::kOps}) {
    for (DType dtype : {kF64, kF32}) {
      auto opt = make();
      std::string what = str_cat(opt->name(), path == Path::kFused ? " fused " : " ops ", dtype_name(dtype));
      expect_near(train(*opt, dtype, path), want, dtype == kF64 ? 1e-12 : 2e-6, what);
    }
  }
}

TEST(Optimizers, SgdPlain) {
  auto want = reference([](double w, double g, double*, int) { return w - 0.01 * g; });
  check_all_paths([] { return std::make_unique<SGD>(); }, want);
}

TEST(Optimizers, SgdMomentumAndNesterov) {
  auto momentum = reference([](double w, double g, double* s, int) {
    s[0] = 0.9 * s[0] - 0.1 * g;
    return w + s[0];
  });
  check_all_paths([] { return std::make_unique<SGD>(SGDOptions{.learning_rate = 0.1, .momentum = 0.9}); }, momentum);
  auto nesterov = reference([](double w, double g, double* s, int) {
    s[0] = 0.9 * s[0] - 0.1 * g;
    return w + 0.9 * s[0] - 0.1 * g;
  });
  check_all_paths(
      [] { return std::make_unique<SGD>(SGDOptions{.learning_rate = 0.1, .momentum = 0.9, .nesterov = true}); },
      nesterov);
}

double adam_step(double w, double g, double* s, int t, double lr, bool amsgrad) {
  s[0] = 0.9 * s[0] + 0.1 * g;
  s[1] = 0.999 * s[1] + 0.001 * g * g;
  s[2] = std::max(s[2], s[1]);
  double lr_t = lr * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
  return w - lr_t * s[0] / (std::sqrt(amsgrad ? s[2] : s[1]) + 1e-7);
}

TEST(Optimizers, AdamFirstStepByHand) {
  // Step 1 with g = 0.5: m = 0.05, v = 0.00025, lr_t = 1e-3 * sqrt(0.001) / 0.1 = 3.16227766e-4,
  // so w moves by lr_t * 0.05 / (0.0158113883 + 1e-7) = 9.9999367e-4.
  Adam adam;
  Variable w(scalar(1.0, kF64), "w");
  adam.apply_gradients({scalar(0.5, kF64)}, {w});
  EXPECT_NEAR(w.value_unwatched().item(), 1.0 - 9.99993675e-4, 1e-11);
}

TEST(Optimizers, Adam) {
  auto want = reference([](double w, double g, double* s, int t) { return adam_step(w, g, s, t, 1e-3, false); });
  check_all_paths([] { return std::make_unique<Adam>(); }, want);
  auto big_lr = reference([](double w, double g, double* s, int t) { return adam_step(w, g, s, t, 0.1, false); });
  check_all_paths([] { return std::make_unique<Adam>(AdamOptions{.learning_rate = 0.1}); }, big_lr);
}

TEST(Optimizers, AdamAmsgrad) {
  auto want = reference([](double w, double g, double* s, int t) { return adam_step(w, g, s, t, 0.1, true); });
  check_all_paths([] { return std::make_unique<Adam>(AdamOptions{.learning_rate = 0.1, .amsgrad = true}); }, want);
}

TEST(Optimizers, AdamWDecaysBeforeTheAdamStep) {
  auto want = reference([](double w, double g, double* s, int t) {
    w -= w * 0.004 * 0.1;  // Keras 3: var -= var * weight_decay * lr
    return adam_step(w, g, s, t, 0.1, false);
  });
  check_all_paths([] { return std::make_unique<AdamW>(AdamWOptions{.learning_rate = 0.1}); }, want);
  EXPECT_EQ(AdamW().get_config().at("weight_decay"), 0.004);
}

TEST(Optimizers, RMSprop) {
  auto plain = reference([](double w, double g, double* s, int) {
    s[0] = 0.9 * s[0] + 0.1 * g * g;
    return w - 0.01 * g / std::sqrt(s[0] + 1e-7);
  });
  check_all_paths([] { return std::make_unique<RMSprop>(RMSpropOptions{.learning_rate = 0.01}); }, plain);
  auto full = reference([](double w, double g, double* s, int) {
    s[0] = 0.8 * s[0] + 0.2 * g * g;  // velocity
    s[1] = 0.8 * s[1] + 0.2 * g;      // average gradient
    s[2] = 0.5 * s[2] + 0.01 * g / std::sqrt(s[0] - s[1] * s[1] + 1e-7);  // momentum
    return w - s[2];
  });
  check_all_paths(
      [] {
        return std::make_unique<RMSprop>(
            RMSpropOptions{.learning_rate = 0.01, .rho = 0.8, .momentum = 0.5, .centered = true});
      },
      full);
}

TEST(Optimizers, Adagrad) {
  auto want = reference(
      [](double w, double g, double* s, int) {
        s[0] += g * g;
        return w - 0.1 * g / std::sqrt(s[0] + 1e-7);
      },
      kGrads, /*initial_state=*/0.1);
  check_all_paths([] { return std::make_unique<Adagrad>(AdagradOptions{.learning_rate = 0.1}); }, want);
}

TEST(Optimizers, LargeVariableUsesParallelChunks) {
  // More elements than one parallel chunk (2^18): every chunk must get the same update.
  int64_t n = (int64_t{1} << 18) * 2 + 5;
  Variable w(ones({n}), "big");
  Adam adam({.learning_rate = 0.1});
  adam.apply_gradients({full({n}, 0.5)}, {w});
  std::vector<float> values = w.value_unwatched().to_vector<float>();
  double expected = 1.0 - 0.1 * 0.05 / (std::sqrt(0.00025) + 1e-7) * std::sqrt(0.001) / 0.1;
  EXPECT_NEAR(values.front(), expected, 1e-6);
  EXPECT_NEAR(values[n / 2], expected, 1e-6);
  EXPECT_NEAR(values.back(), expected, 1e-6);
}

TEST(Schedules, ExponentialDecay) {
  schedules::ExponentialDecay smooth({.initial_learning_rate = 0.1, .decay_steps = 10, .decay_rate = 0.5});
  EXPECT_DOUBLE_EQ(smooth(0), 0.1);
  EXPECT_NEAR(smooth(5), 0.1 * std::sqrt(0.5), 1e-15);
  EXPECT_NEAR(smooth(20), 0.025, 1e-15);
  schedules::ExponentialDecay stairs(
      {.initial_learning_rate = 0.1, .decay_steps = 10, .decay_rate = 0.5, .staircase = true});
  EXPECT_DOUBLE_EQ(stairs(9), 0.1);
  EXPECT_DOUBLE_EQ(stairs(15), 0.05);
  EXPECT_THROW(schedules::ExponentialDecay({.initial_learning_rate = 0.1, .decay_rate = 0.5}), ValueError);
}

TEST(Schedules, CosineDecay) {
  schedules::CosineDecay plain({.initial_learning_rate = 1.0, .decay_steps = 100, .alpha = 0.1});
  EXPECT_DOUBLE_EQ(plain(0), 1.0);
  EXPECT_NEAR(plain(50), 0.9 * 0.5 + 0.1, 1e-15);            // cos(pi/2) = 0
  EXPECT_NEAR(plain(25), 0.9 * 0.5 * (1 + std::sqrt(0.5)) + 0.1, 1e-15);
  EXPECT_NEAR(plain(100), 0.1, 1e-15);
  EXPECT_NEAR(plain(1000), 0.1, 1e-15);                       // stays at alpha
  schedules::CosineDecay warm(
      {.initial_learning_rate = 0.0, .decay_steps = 100, .warmup_target = 1.0, .warmup_steps = 10});
  EXPECT_DOUBLE_EQ(warm(0), 0.0);
  EXPECT_DOUBLE_EQ(warm(5), 0.5);
  EXPECT_DOUBLE_EQ(warm(10), 1.0);
  EXPECT_NEAR(warm(60), 0.5, 1e-15);                          // halfway through the decay
  EXPECT_NEAR(warm(500), 0.0, 1e-15);
}

TEST(Schedules, LinearWarmup) {
  schedules::LinearWarmup constant(0.1, {.warmup_steps = 4});
  EXPECT_DOUBLE_EQ(constant(0), 0.0);
  EXPECT_DOUBLE_EQ(constant(2), 0.05);
  EXPECT_DOUBLE_EQ(constant(4), 0.1);
  EXPECT_DOUBLE_EQ(constant(100), 0.1);
  auto decay = std::make_shared<schedules::ExponentialDecay>(
      schedules::ExponentialDecayOptions{.initial_learning_rate = 0.2, .decay_steps = 10, .decay_rate = 0.5});
  schedules::LinearWarmup wrapped(decay, {.warmup_steps = 10, .initial_learning_rate = 0.1});
  EXPECT_DOUBLE_EQ(wrapped(5), 0.15);
  EXPECT_DOUBLE_EQ(wrapped(20), 0.1);  // the decay at its own step 10
}

TEST(Schedules, OptimizerUsesTheRateAtItsIterationCount) {
  auto decay = std::make_shared<schedules::ExponentialDecay>(
      schedules::ExponentialDecayOptions{.initial_learning_rate = 1.0, .decay_steps = 1, .decay_rate = 0.5});
  SGD sgd({.learning_rate = decay});
  EXPECT_DOUBLE_EQ(sgd.learning_rate(), 1.0);
  auto got = train(sgd, kF64, Path::kFused);
  EXPECT_DOUBLE_EQ(sgd.learning_rate(), 0.125);
  double lr[] = {1.0, 0.5, 0.25};
  auto want = reference([&](double w, double g, double*, int t) { return w - lr[t - 1] * g; });
  expect_near(got, want, 1e-15, "sgd with decay");
  sgd.set_learning_rate(0.01);
  EXPECT_DOUBLE_EQ(sgd.get_config().at("learning_rate"), 0.01);
}

TEST(Clipping, ClipnormScalesEachGradient) {
  for (Path path : {Path::kFused, Path::kOps}) {
    SGD sgd({.learning_rate = 1.0, .clipnorm = 1.0});
    Variable a(zeros({2}, kF64), "a"), b(zeros({2}, kF64), "b");
    sgd.apply_gradients({gradient({3, 4}, kF64, path), gradient({0.3, 0.4}, kF64, path)}, {a, b});
    expect_near(a.value_unwatched().to_vector<double>(), {-0.6, -0.8}, 1e-15, "norm 5 clipped to 1");
    expect_near(b.value_unwatched().to_vector<double>(), {-0.3, -0.4}, 1e-15, "norm 0.5 kept");
  }
}

TEST(Clipping, GlobalClipnormScalesAllTogether) {
  for (Path path : {Path::kFused, Path::kOps}) {
    SGD sgd({.learning_rate = 1.0, .global_clipnorm = 1.3});
    Variable a(zeros({2}, kF64), "a"), b(zeros({2}, kF64), "b");
    sgd.apply_gradients({gradient({3, 4}, kF64, path), gradient({12, 0}, kF64, path)}, {a, b});  // joint norm 13
    expect_near(a.value_unwatched().to_vector<double>(), {-0.3, -0.4}, 1e-15, "a");
    expect_near(b.value_unwatched().to_vector<double>(), {-1.2, 0}, 1e-15, "b");
  }
}

// apply_gradients(sums, vars, scale): the update of sums x scale (what a data-parallel step hands over),
// with the norms clipnorm sees scaled too.
TEST(ApplyGradients, ScaleMultipliesTheGradientsInsideTheUpdate) {
  for (Path path : {Path::kFused, Path::kOps}) {
    Adam scaled, plain;
    Variable a(ones({3}, kF64), "a"), b(ones({3}, kF64), "b");
    for (int step = 0; step < 3; ++step) {
      scaled.apply_gradients({gradient({2, -4, 6}, kF64, path)}, {a}, 0.5);
      plain.apply_gradients({gradient({1, -2, 3}, kF64, path)}, {b});
    }
    EXPECT_EQ(a.value_unwatched().to_vector<double>(), b.value_unwatched().to_vector<double>()) << "x 0.5 is exact";
    SGD sgd({.learning_rate = 1.0, .clipnorm = 1.0});
    Variable c(zeros({2}, kF64), "c");
    sgd.apply_gradients({gradient({3, 4}, kF64, path)}, {c}, 0.1);  // norm 0.5 once scaled: not clipped
    expect_near(c.value_unwatched().to_vector<double>(), {-0.3, -0.4}, 1e-15, "scaled, then clipnorm");
    EXPECT_THROW(sgd.apply_gradients({gradient({3, 4}, kF64, path)}, {c}, 0.0), ValueError);
  }
}

TEST(Clipping, ClipvalueLimitsElements) {
  for (Path path : {Path::kFused, Path::kOps}) {
    SGD sgd({.learning_rate = 1.0, .clipvalue = 0.5});
    Variable a(zeros({3}, kF64), "a");
    sgd.apply_gradients({gradient({-2, 0.1, 3}, kF64, path)}, {a});
    expect_near(a.value_unwatched().to_vector<double>(), {0.5, -0.1, -0.5}, 1e-15, "clipvalue");
  }
}

TEST(Clipping, OnlyOneOptionAtATime) {
  EXPECT_THROW(SGD({.clipnorm = 1.0, .clipvalue = 1.0}), ValueError);
  EXPECT_THROW(Adam({.clipnorm = -1.0}), ValueError);
}

TEST(WeightDecay, SgdDecaysWithTheLearningRate) {
  auto want = reference([](double w, double g, double*, int) { return w - w * 0.5 * 0.1 - 0.1 * g; });
  check_all_paths([] { return std::make_unique<SGD>(SGDOptions{.learning_rate = 0.1, .weight_decay = 0.5}); }, want);
}

TEST(ApplyGradients, UndefinedGradientSkipsItsVariable) {
  Adam adam;
  Variable a(ones({2}), "a"), b(ones({2}), "b");
  adam.apply_gradients({Tensor(), ones({2})}, {a, b});
  EXPECT_EQ(a.value_unwatched().to_vector<float>(), (std::vector<float>{1, 1}));
  EXPECT_LT(b.value_unwatched().to_vector<float>()[0], 1.0f);
  EXPECT_EQ(adam.iterations(), 1);
  EXPECT_THROW(adam.get_slot(a, "adam_m"), StateError);  // never updated, so never built
  EXPECT_THROW(adam.apply_gradients({Tensor(), Tensor()}, {a, b}), ValueError);
  EXPECT_EQ(adam.iterations(), 1);
}

TEST(ApplyGradients, MismatchesAreErrors) {
  SGD sgd;
  Variable w(zeros({2, 3}), "dense/kernel");
  EXPECT_THROW(sgd.apply_gradients({ones({2, 3})}, {w, w}), ValueError);
  try {
    sgd.apply_gradients({ones({3, 2})}, {w});
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("dense/kernel"), std::string::npos) << e.what();
  }
  EXPECT_THROW(sgd.apply_gradients({ones({2, 3}, kF64)}, {w}), DTypeError);
}

TEST(Slots, NamesFollowKeras) {
  Adam adam({.amsgrad = true});
  Variable kernel(zeros({2, 2}), "dense/kernel"), bias(zeros({2}), "dense/bias");
  adam.build({kernel, bias});
  std::vector<std::string> names;
  for (const Variable& v : adam.variables()) names.push_back(v.name());
  EXPECT_EQ(names, (std::vector<std::string>{"iteration", "dense/kernel/adam_m", "dense/kernel/adam_v",
                                             "dense/kernel/adam_vhat", "dense/bias/adam_m", "dense/bias/adam_v",
                                             "dense/bias/adam_vhat"}));
  EXPECT_FALSE(adam.get_slot(kernel, "adam_m").trainable());
  EXPECT_EQ(adam.get_slot(bias, "adam_v").shape(), (Shape{2}));
  EXPECT_THROW(adam.get_slot(kernel, "momentum"), StateError);

  Adagrad adagrad;
  adagrad.build({bias});
  EXPECT_EQ(adagrad.get_slot(bias, "adagrad_accumulator").value_unwatched().to_vector<float>(),
            (std::vector<float>{0.1f, 0.1f}));
  EXPECT_EQ(SGD().variables().size(), 1u);  // only the iteration counter
  SGD momentum({.momentum = 0.9});
  momentum.build({bias});
  EXPECT_EQ(momentum.variables().back().name(), "dense/bias/sgd_momentum");
  RMSprop rms({.momentum = 0.5, .centered = true});
  rms.build({bias});
  EXPECT_EQ(rms.variables().back().name(), "dense/bias/rmsprop_average_gradient");
}

TEST(Config, NamesDefaultsAndLookup) {
  EXPECT_EQ(SGD().name(), "SGD");
  EXPECT_EQ(Adam().name(), "adam");
  EXPECT_EQ(AdamW().name(), "adamw");
  EXPECT_EQ(RMSprop().name(), "rmsprop");
  EXPECT_EQ(Adagrad().name(), "adagrad");
  auto config = Adam().get_config();
  EXPECT_DOUBLE_EQ(config.at("learning_rate"), 1e-3);
  EXPECT_DOUBLE_EQ(config.at("beta_1"), 0.9);
  EXPECT_DOUBLE_EQ(config.at("beta_2"), 0.999);
  EXPECT_DOUBLE_EQ(config.at("epsilon"), 1e-7);
  EXPECT_EQ(config.count("clipnorm"), 0u);
  EXPECT_DOUBLE_EQ(SGD().learning_rate(), 0.01);
  EXPECT_DOUBLE_EQ(Adagrad().get_config().at("initial_accumulator_value"), 0.1);
  EXPECT_DOUBLE_EQ(RMSprop().get_config().at("rho"), 0.9);
  EXPECT_EQ(make_optimizer("Adam")->name(), "adam");
  EXPECT_EQ(make_optimizer("rmsprop")->name(), "rmsprop");
  try {
    make_optimizer("adamax");
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("adamax"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gradflow

namespace gradflow {
namespace {

using namespace optimizers;

// A split update (DataParallelOptions::shard_update): the variable's flat elements updated in parts,
// each from its part of the gradient, give bitwise what one apply_gradients gives, over several steps,
// for every built-in optimizer and the options that stay elementwise. (Ranks each pass their own parts;
// the data-parallel tests check that across processes.)
TEST(SplitUpdate, PartsGiveBitwiseTheWholeUpdate) {
  std::vector<std::function<std::unique_ptr<Optimizer>()>> makers = {
      [] { return std::make_unique<SGD>(); },
      [] { return std::make_unique<SGD>(SGDOptions{.momentum = 0.9, .nesterov = true, .weight_decay = 0.01}); },
      [] { return std::make_unique<Adam>(AdamOptions{.amsgrad = true, .clipvalue = 0.3}); },
      [] { return std::make_unique<AdamW>(); },
      [] { return std::make_unique<RMSprop>(RMSpropOptions{.momentum = 0.5, .centered = true}); },
      [] { return std::make_unique<Adagrad>(); },
  };
  for (auto& make : makers) {
    std::unique_ptr<Optimizer> whole = make(), split = make();
    ASSERT_TRUE(split->splits_elementwise()) << split->name();
    Variable a(random_uniform({6, 7}, -1, 1, kF32, kCPU, 1), "a"), b(random_uniform({6, 7}, -1, 1, kF32, kCPU, 1), "b");
    // Three parts, the middle one crossing rows; an empty one too.
    const std::vector<std::pair<int64_t, int64_t>> ranges = {{0, 10}, {10, 33}, {33, 33}, {33, 42}};
    std::vector<Optimizer::UpdatePart> parts;
    for (auto [lo, hi] : ranges) parts.push_back(split->update_part(b, lo, hi));
    for (int step = 0; step < 4; ++step) {
      Tensor g = random_uniform({6, 7}, -1, 1, kF32, kCPU, 10 + step);
      whole->apply_gradients({g}, {a}, 0.5);
      Tensor flat = g.reshape({42});
      std::vector<Tensor> grads;
      for (auto [lo, hi] : ranges) grads.push_back(flat.slice(0, lo, hi).contiguous());
      split->apply_gradient_parts(grads, parts, 0.5);  // one step: the iteration count advances once
    }
    EXPECT_EQ(a.value_unwatched().to_vector<float>(), b.value_unwatched().to_vector<float>()) << whole->name();
    for (size_t s = 0; s < whole->slots(a).size(); ++s) {
      EXPECT_EQ(whole->slots(a)[s].value_unwatched().to_vector<float>(),
                split->slots(b)[s].value_unwatched().to_vector<float>())
          << whole->name() << " slot " << s;
    }
  }
}

TEST(SplitUpdate, NormClippingCannotBeSplit) {
  Adam clipped({.clipnorm = 1.0});
  Adam global({.global_clipnorm = 1.0});
  EXPECT_FALSE(clipped.splits_elementwise());
  EXPECT_FALSE(global.splits_elementwise());
  Variable v(zeros({4}), "v");
  EXPECT_THROW(clipped.update_part(v, 0, 2), StateError);
  Adam adam;
  EXPECT_THROW(adam.update_part(v, 3, 5), ValueError);  // past the end: names the variable and range
}

}  // namespace
}  // namespace gradflow
