// MirroredStrategy: N replicas on threads of this process train as one replica with the global batch
// (fit on tensors and on a Dataset, uneven last batches, SyncBatchNormalization's global statistics),
// evaluate reports the same, and dropout draws the same masks on every run whatever the threads' timing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>

#include "core/checkpoint/checkpoint.h"
#include "core/nn/threaded_update.h"
#include "core/trace/trace.h"

#include "strategies/mirrored.h"
#include "tests/strategies/replica_checks.h"
#include "tests/core/crash_callbacks.h"

namespace gradflow::strategies {
namespace {

using testing::max_relative_difference;

Sequential make_model(bool sync_bn = false, bool plain_bn = false, double dropout = 0) {
  std::vector<Layer> layers{Dense(16)};
  if (sync_bn) layers.push_back(SyncBatchNormalization({.momentum = 0.8}));
  if (plain_bn) layers.push_back(BatchNormalization({.momentum = 0.8}));
  layers.push_back(Activation("relu"));
  if (dropout > 0) layers.push_back(Dropout(dropout));
  layers.push_back(Dense(4, {.activation = "softmax"}));
  Sequential model(layers);
  model.compile(std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 0.3}),
                "sparse_categorical_crossentropy", {"accuracy"});
  return model;
}

// A path of this process's own in the temporary directory (tests may run concurrently).
std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("gradflow_mirrored_" + std::to_string(::getpid()) + "_" + name)).string();
}

// "0,1,2" for an i64 vector.
std::string key_of(const Tensor& t) {
  std::string out;
  for (int64_t v : t.to_vector<int64_t>()) out += (out.empty() ? "" : ",") + std::to_string(v);
  return out;
}

std::pair<Tensor, Tensor> data(int64_t n) {
  return {random_uniform({n, 8}, -1, 1, kF32, kCPU, 71), random_uniform({n}, 0, 4, kF32, kCPU, 72).to(kI64)};
}

// Optimizers whose update splits elementwise, each in a configuration with slots: Adam with amsgrad,
// SGD with momentum, centered RMSprop.
using MakeOptimizer = std::function<std::shared_ptr<optimizers::Optimizer>()>;
std::vector<MakeOptimizer> splittable_optimizers() {
  return {
      [] { return std::make_shared<optimizers::Adam>(optimizers::AdamOptions{.learning_rate = 0.01, .amsgrad = true}); },
      [] { return std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 0.1, .momentum = 0.9}); },
      [] { return std::make_shared<optimizers::RMSprop>(optimizers::RMSpropOptions{.learning_rate = 0.01, .centered = true}); },
  };
}

// Two lists of variables with the same names and values, of 37, 1000 and 5 elements (parts that end mid
// cache line among 2 or 3 threads).
std::pair<std::vector<Variable>, std::vector<Variable>> twin_variables(DType dtype) {
  std::vector<Variable> a, b;
  for (int64_t n : {37, 1000, 5}) {
    Tensor init = random_uniform({n}, -1, 1, dtype, kCPU, 40 + n);
    a.emplace_back(init.clone(), str_cat("v", n));
    b.emplace_back(init.clone(), str_cat("v", n));
  }
  return {a, b};
}

// The variables and the optimizers' slots (after their iteration counters) hold the same bits.
void expect_bitwise_equal(const std::vector<Variable>& vars, const optimizers::Optimizer& opt,
                          const std::vector<Variable>& plain_vars, const optimizers::Optimizer& plain_opt,
                          std::string_view what) {
  for (size_t i = 0; i < vars.size(); ++i) {
    EXPECT_EQ(vars[i].value_unwatched().to_vector<double>(), plain_vars[i].value_unwatched().to_vector<double>())
        << opt.name() << " " << what << " " << vars[i].name();
  }
  ASSERT_EQ(opt.variables().size(), plain_opt.variables().size()) << opt.name() << " " << what;
  for (size_t k = 1; k < opt.variables().size(); ++k) {
    EXPECT_EQ(opt.variables()[k].value_unwatched().to_vector<double>(),
              plain_opt.variables()[k].value_unwatched().to_vector<double>())
        << opt.name() << " " << what << " " << opt.variables()[k].name();
  }
}

// The update split among the replica threads (ThreadedUpdate, what fit uses for replicas sharing the
// variables) is bitwise one apply_gradients of the replicas' summed gradients: Adam, SGD with momentum
// and RMSprop, f32 and f64, variables whose parts end mid cache line, a replica without one gradient
// and one without any, over three steps. An optimizer that cannot split (clipnorm) gets none.
TEST(Mirrored, TheUpdateSplitAmongTheThreadsIsOneUpdateOfTheSum) {
  const std::vector<MakeOptimizer> optimizers_to_try = splittable_optimizers();
  for (DType dtype : {kF32, kF64}) {
    for (const MakeOptimizer& make : optimizers_to_try) {
      MirroredStrategy strategy(3);
      auto scope = strategy.scope();
      ReplicaContext& ctx = *current_replica_context();  // what fit steps with
      auto [split_vars, plain_vars] = twin_variables(dtype);
      std::shared_ptr<optimizers::Optimizer> split_opt = make(), plain_opt = make();
      std::unique_ptr<ThreadedUpdate> threaded = ThreadedUpdate::make(ctx, split_vars, *split_opt);
      ASSERT_TRUE(threaded);
      for (int step = 0; step < 3; ++step) {
        std::vector<std::vector<Tensor>> grads(3);
        for (int r = 0; r < 3; ++r) {
          if (r == 2 && step == 1) continue;  // a replica without rows: no gradients at all
          for (size_t i = 0; i < split_vars.size(); ++i) {
            const bool missing = r == 1 && i == 2;  // replica 1 never has the last variable's gradient
            grads[r].push_back(missing ? Tensor()
                                       : random_uniform({split_vars[i].value_unwatched().numel()}, -1, 1, dtype, kCPU,
                                                        100 * step + 10 * r + i));
          }
        }
        ASSERT_TRUE(threaded->apply(ctx, grads, 0.5));
        plain_opt->apply_gradients(ctx.sum_replica_gradients(grads, plain_vars), plain_vars, 0.5);
      }
      EXPECT_EQ(split_opt->iterations(), 3);
      expect_bitwise_equal(split_vars, *split_opt, plain_vars, *plain_opt, dtype_name(dtype));
    }
  }
  MirroredStrategy strategy(2);
  auto scope = strategy.scope();
  Variable v(zeros({8}), "v");
  optimizers::SGD clipped({.learning_rate = 0.1, .clipnorm = 1.0});
  EXPECT_EQ(ThreadedUpdate::make(*current_replica_context(), {v}, clipped), nullptr);
}

// Inside run(), where every replica calls apply_gradients with strategy.gradient's averages, replicas
// sharing the variables each update their own part of them (ThreadedUpdate::apply_part): bitwise the
// update apply_gradients makes alone with those averages, the iteration counter advanced once per step;
// Adam, SGD with momentum and RMSprop, f32 and f64, parts ending mid cache line, a variable no replica
// has a gradient for (left as it is), a replica without rows. The averages are one sum for all replicas.
TEST(Mirrored, CustomLoopReplicasEachUpdateTheirPartBitwiseAsOneUpdate) {
  const std::vector<MakeOptimizer> optimizers_to_try = splittable_optimizers();
  const std::string trace_file = temp_path("split_update.json");
  for (DType dtype : {kF32, kF64}) {
    for (const MakeOptimizer& make : optimizers_to_try) {
      const bool traced = dtype == kF32 && &make == &optimizers_to_try[0];
      if (traced) trace::start();
      MirroredStrategy mirrored(3);
      auto [vars, plain_vars] = twin_variables(dtype);
      std::shared_ptr<optimizers::Optimizer> opt = make(), plain_opt = make();
      plain_opt->build(plain_vars);  // the split builds every variable's slots, as fit does
      for (int step = 0; step < 3; ++step) {
        // 7 rows split 3 + 2 + 2; at step 1, 2 rows: replica 2 has none.
        Tensor rows = zeros({step == 1 ? 2 : 7, 1}, dtype);
        std::vector<std::vector<Tensor>> averages(3);
        mirrored.run(
            [&](const Tensor&) {
              const int r = current_replica_context()->replica_id();
              std::vector<Tensor> grads;
              for (size_t i = 0; i < vars.size(); ++i) {
                grads.push_back(i == 2 ? Tensor()  // nobody's
                                       : random_uniform({vars[i].value_unwatched().numel()}, -1, 1, dtype, kCPU,
                                                        100 * step + 10 * r + i));
              }
              averages[r] = mirrored.reduce_gradients(grads);
              opt->apply_gradients(averages[r], vars);
            },
            rows);
        for (int r = 1; r < 3; ++r) {
          for (size_t i = 0; i < 2; ++i) {
            EXPECT_EQ(averages[r][i].raw_data(), averages[0][i].raw_data()) << "one sum for all replicas";
          }
          EXPECT_FALSE(averages[r][2].defined());
        }
        plain_opt->apply_gradients(averages[0], plain_vars);  // outside any strategy: the update alone
      }
      if (traced) {
        trace::stop_and_write(trace_file);
        std::ifstream in(trace_file);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::filesystem::remove(trace_file);
        size_t parts = 0;
        for (size_t at = text.find("\"optimizer\""); at != std::string::npos; at = text.find("\"optimizer\"", at + 1)) ++parts;
        EXPECT_EQ(parts, 9u) << "each of the 3 replicas updated its part at each of the 3 steps";
      }
      EXPECT_EQ(opt->iterations(), 3);
      expect_bitwise_equal(vars, *opt, plain_vars, *plain_opt, dtype_name(dtype));
    }
  }
}

// A replica passing the same gradients as a strided view (which the split update does not take: the
// update then runs once for all) still gets bitwise the plain update, at every step.
TEST(Mirrored, CustomLoopUpdateIsExactWhenAReplicaPassesAStridedViewOfTheGradients) {
  MirroredStrategy mirrored(2);
  Tensor init = random_uniform({37}, -1, 1, kF32, kCPU, 5);
  Variable v(init.clone(), "v"), plain(init.clone(), "v");
  optimizers::Adam adam({.learning_rate = 0.01}), plain_adam({.learning_rate = 0.01});
  const Tensor g = random_uniform({37}, -1, 1, kF32, kCPU, 6);
  const Tensor spread = zeros({74});
  copy_into(spread.slice(0, 0, 74, 2), g);  // g's values at every other element
  for (int step = 0; step < 2; ++step) {
    mirrored.run(
        [&](const Tensor&) {
          const bool strided = current_replica_context()->replica_id() == 1;
          adam.apply_gradients({strided ? spread.slice(0, 0, 74, 2) : g}, {v});
        },
        zeros({4, 1}));
    plain_adam.apply_gradients({g}, {plain});
  }
  EXPECT_EQ(adam.iterations(), 2);
  EXPECT_EQ(v.value_unwatched().to_vector<double>(), plain.value_unwatched().to_vector<double>());
}

// The cross-replica average of a custom loop adds in plain loops on the replica threads, not through ops:
// it still flushes denormal results to zero as the ops do (and as the average over devices does).
TEST(Mirrored, CustomLoopAveragesFlushDenormalsAsOpsDo) {
  ASSERT_TRUE(flush_denormal_enabled());
  MirroredStrategy mirrored(2);
  Variable v(zeros({40}), "v");
  const Tensor tiny = full({40}, 1e-38);  // a normal f32; half of it is denormal
  std::vector<std::vector<float>> averages(2);
  mirrored.run(
      [&](const Tensor&) {
        const int r = current_replica_context()->replica_id();
        averages[r] = mirrored.reduce_gradients({tiny}).at(0).to_vector<float>();
      },
      zeros({4, 1}));
  const std::vector<float> by_ops = (tiny * 0.5 + tiny * 0.5).to_vector<float>();
  EXPECT_EQ(averages[0], by_ops);
  EXPECT_EQ(averages[1], by_ops);
  EXPECT_EQ(by_ops[0], 0.0f) << "ops flush the denormal halves";
}

TEST(Mirrored, FitAndEvaluateMatchOneReplicaWithTheGlobalBatch) {
  for (int replicas : {2, 3}) {
    auto [x, y] = data(8 * replicas * 3 + 5);  // a short last step, some replicas without rows
    set_seed(3);
    Sequential mirrored = make_model();
    MirroredStrategy strategy(replicas);
    Logs eval;
    {
      auto scope = strategy.scope();
      mirrored.fit(x, y, {.epochs = 2, .batch_size = 8, .shuffle = false, .verbose = 0});
      eval = mirrored.evaluate(x, y);
    }
    set_seed(3);
    Sequential single = make_model();
    single.fit(x, y, {.epochs = 2, .batch_size = 8 * replicas, .shuffle = false, .verbose = 0});
    EXPECT_LT(max_relative_difference(mirrored.variables(), single.variables()), 1e-5) << replicas << " replicas";
    Logs expected = single.evaluate(x, y);
    EXPECT_NEAR(eval["loss"], expected["loss"], 1e-5);
    EXPECT_NEAR(eval["accuracy"], expected["accuracy"], 1e-9);
  }
}

// Accumulating k batches runs every replica's part on its thread too, and equals one replica with the
// batch of the whole group (also with a short last group); the replica threads are named in a trace.
TEST(Mirrored, GradientAccumulationRunsOnTheReplicaThreads) {
  auto [x, y] = data(8 * 2 * 2 * 3 + 11);
  set_seed(3);
  Sequential mirrored = make_model();
  MirroredStrategy strategy(2);
  std::string trace_file = temp_path("accumulation.json");
  {
    auto scope = strategy.scope();
    trace::start();
    mirrored.fit(x, y, {.epochs = 2, .batch_size = 8, .shuffle = false, .verbose = 0, .gradient_accumulation_steps = 2});
    trace::stop_and_write(trace_file);
  }
  set_seed(3);
  Sequential single = make_model();
  single.fit(x, y, {.epochs = 2, .batch_size = 8 * 2 * 2, .shuffle = false, .verbose = 0});
  EXPECT_LT(max_relative_difference(mirrored.variables(), single.variables()), 1e-5);
  std::ifstream in(trace_file);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"replica 1\""), std::string::npos) << "replica 1's thread ran the forward passes";
  EXPECT_NE(text.find("replicas forward and backward"), std::string::npos);
  std::filesystem::remove(trace_file);
}

TEST(Mirrored, FitOnADatasetTakesOneBatchPerReplica) {
  auto [x, y] = data(70);
  set_seed(4);
  Sequential mirrored = make_model();
  MirroredStrategy strategy(2);
  {
    auto scope = strategy.scope();
    mirrored.fit(Dataset::from_tensor_slices({x, y}).batch(8), {.epochs = 2, .verbose = 0});
  }
  set_seed(4);
  Sequential single = make_model();
  single.fit(Dataset::from_tensor_slices({x, y}).batch(16), {.epochs = 2, .verbose = 0});
  EXPECT_LT(max_relative_difference(mirrored.variables(), single.variables()), 1e-5);
}

TEST(Mirrored, SyncBatchNormalizationUsesTheGlobalBatch) {
  // Equal parts: to rounding. A last step of 3 rows split [2, 1]: its statistics of 3 rows magnify the
  // different order of the sums (4e-4 to 1.1e-3, depending on the random data), so that case gets a
  // looser bound.
  for (auto [n, tolerance] : {std::pair{int64_t{2 * 8 * 4}, 1e-4}, std::pair{int64_t{2 * 8 * 4 + 3}, 3e-3}}) {
    auto [x, y] = data(n);
    set_seed(5);
    Sequential mirrored = make_model(/*sync_bn=*/true);
    MirroredStrategy strategy(2);
    {
      auto scope = strategy.scope();
      mirrored.fit(x, y, {.epochs = 2, .batch_size = 8, .shuffle = false, .verbose = 0});
    }
    set_seed(5);
    Sequential single = make_model(/*sync_bn=*/false, /*plain_bn=*/true);
    single.fit(x, y, {.epochs = 2, .batch_size = 16, .shuffle = false, .verbose = 0});
    EXPECT_LT(max_relative_difference(mirrored.variables(), single.variables()), tolerance)
        << n << " rows: weights and moving statistics";
  }
}

TEST(Mirrored, DropoutIsTheSameOnEveryRun) {
  auto [x, y] = data(96);
  std::vector<std::vector<float>> runs;
  for (int run = 0; run < 2; ++run) {
    set_seed(6);
    Sequential model = make_model(false, /*plain_bn=*/true, /*dropout=*/0.3);
    MirroredStrategy strategy(3);
    auto scope = strategy.scope();
    model.fit(x, y, {.epochs = 2, .batch_size = 8, .verbose = 0});
    runs.push_back(model.variables()[0].value_unwatched().reshape({-1}).to_vector<float>());
  }
  EXPECT_EQ(runs[0], runs[1]);
}

// One process holds every replica's state: its checkpoints are whole (model.safetensors), and a resumed
// mirrored fit continues bitwise, dropout included.
TEST(Mirrored, CheckpointsAreWholeAndResumeBitwise) {
  std::string dir = temp_path("backup");
  std::filesystem::remove_all(dir);
  auto [x, y] = data(80);  // 5 global batches of 2 x 8 an epoch
  auto train = [&](std::vector<CallbackPtr> callbacks, uint64_t seed) {
    set_seed(seed);
    reset_layer_names();
    Sequential model = make_model(false, false, /*dropout=*/0.3);
    MirroredStrategy strategy(2);
    auto scope = strategy.scope();
    model.fit(x, y, {.epochs = 3, .batch_size = 8, .callbacks = callbacks, .verbose = 0});
    return model;
  };
  Sequential uninterrupted = train({}, 5);
  EXPECT_THROW(train({BackupAndRestore(dir, {.save_freq = "3"}), std::make_shared<testing::CrashAfterBatch>(8)}, 5),
               std::runtime_error);
  EXPECT_TRUE(std::filesystem::exists(dir + "/ckpt-6/model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/ckpt-6/optimizer.safetensors"));
  std::ifstream meta(dir + "/ckpt-6/meta.json");
  std::string text((std::istreambuf_iterator<char>(meta)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"strategy\": \"MirroredStrategy\""), std::string::npos) << text;
  Sequential resumed = train({BackupAndRestore(dir, {.save_freq = "3"})}, 999);
  EXPECT_EQ(testing::weights(resumed), testing::weights(uninterrupted));
  std::filesystem::remove_all(dir);
}

// A custom training loop, the same code for every strategy: distribute_dataset, then strategy.run of a
// step that takes its replica's rows, computes gradients with strategy.gradient (or tape.gradient and
// reduce_gradients) and applies them; the mean loss by strategy.reduce.
struct CustomLoopResult {
  std::vector<Variable> variables;
  std::vector<double> losses;
};
CustomLoopResult custom_loop(Strategy& strategy, const Tensor& x, const Tensor& y, int64_t batch,
                             bool strategy_gradient, double dropout = 0) {
  set_seed(9);
  reset_layer_names();
  Sequential model = make_model(false, false, dropout);
  {
    autodiff::SuspendRecording build;  // built here, before the replica threads share it
    model(x.slice(0, 0, 1));
  }
  auto scope = strategy.scope();
  strategy.broadcast_variables(model.variables());  // replicas over devices: their copies
  losses::SparseCategoricalCrossentropy loss_fn;
  optimizers::SGD sgd({.learning_rate = 0.3});
  std::vector<Variable> vars = model.trainable_variables();
  CustomLoopResult result;
  for (int epoch = 0; epoch < 2; ++epoch) {
    for (const Element& e : strategy.distribute_dataset(Dataset::from_tensor_slices({x, y}).batch(batch))) {
      PerReplica<Tensor> losses = strategy.run(
          [&](const Tensor& xb, const Tensor& yb) {
            GradientTape tape;
            Tensor loss = loss_fn(yb, model(xb, true));
            std::vector<Tensor> grads;
            if (strategy_gradient) {
              grads = strategy.gradient(tape, loss, vars);
            } else {
              grads = strategy.reduce_gradients(tape.gradient(loss, std::vector<GradSource>(vars.begin(), vars.end())));
            }
            sgd.apply_gradients(grads, vars);
            return loss;
          },
          e[0], e[1]);
      EXPECT_EQ(static_cast<int>(losses.values.size()), strategy.num_local_replicas());
      result.losses.push_back(strategy.reduce(Reduction::kMean, losses).item());
    }
  }
  result.variables = model.variables();
  return result;
}

TEST(Mirrored, CustomLoopMatchesOneReplicaWithTheGlobalBatch) {
  for (int replicas : {2, 3}) {
    for (bool strategy_gradient : {true, false}) {
      auto [x, y] = data(8 * replicas * 3);
      DefaultStrategy single;
      MirroredStrategy mirrored(replicas);
      CustomLoopResult alone = custom_loop(single, x, y, 8 * replicas, strategy_gradient);
      CustomLoopResult threads = custom_loop(mirrored, x, y, 8, strategy_gradient);
      EXPECT_LT(max_relative_difference(threads.variables, alone.variables), 1e-5)
          << replicas << " replicas, " << (strategy_gradient ? "strategy.gradient" : "reduce_gradients");
      ASSERT_EQ(threads.losses.size(), alone.losses.size());
      for (size_t i = 0; i < alone.losses.size(); ++i) EXPECT_NEAR(threads.losses[i], alone.losses[i], 1e-5);
    }
  }
}

TEST(Mirrored, RunGivesEachReplicaItsPartOfEveryArgument) {
  MirroredStrategy mirrored(3);
  Tensor rows = arange(0, 7, 1, kI64);  // split 3 + 2 + 2, as numpy.array_split
  PerReplica<std::string> names{{"a", "b", "c"}};
  int calls = 0;
  std::mutex mu;
  PerReplica<std::string> seen = mirrored.run(
      [&](const Tensor& part, const std::string& name, int& counter) {
        std::lock_guard<std::mutex> lock(mu);
        ++counter;
        return name + ":" + std::to_string(current_replica_context()->replica_id()) + ":" + key_of(part);
      },
      rows, names, calls);
  EXPECT_EQ(seen.values, (std::vector<std::string>{"a:0:0,1,2", "b:1:3,4", "c:2:5,6"}));
  EXPECT_EQ(calls, 3) << "a plain argument reaches every replica as it is";
  EXPECT_THROW(mirrored.run([](const std::string&) {}, PerReplica<std::string>{{"a", "b"}}), ValueError);
  PerReplica<Tensor> values = mirrored.run([](const Tensor& part) { return sum(part); }, rows.to(kF64));
  EXPECT_EQ(mirrored.reduce(Reduction::kSum, values).item(), 21.0);
  EXPECT_EQ(mirrored.reduce(Reduction::kMean, values).item(), 7.0);
  EXPECT_EQ(mirrored.reduce(Reduction::kMean, from_vector<double>({4.0})).item(), 4.0) << "one value per process";
}

TEST(Mirrored, CustomLoopWeighsAShortLastStepByRows) {
  // 8 x 2 x 2 + 5 rows: the last step's 5 rows split 3 + 2 (array_split), weighted 3/5 and 2/5.
  auto [x, y] = data(37);
  DefaultStrategy single;
  MirroredStrategy mirrored(2);
  CustomLoopResult alone = custom_loop(single, x, y, 16, true);
  CustomLoopResult threads = custom_loop(mirrored, x, y, 8, true);
  EXPECT_LT(max_relative_difference(threads.variables, alone.variables), 1e-5);
}

TEST(Mirrored, CustomLoopDropoutRepeatsWhateverTheThreadsTiming) {
  auto [x, y] = data(64);
  std::vector<std::vector<float>> runs;
  for (int run = 0; run < 2; ++run) {
    MirroredStrategy mirrored(3);
    CustomLoopResult r = custom_loop(mirrored, x, y, 8, true, /*dropout=*/0.4);
    runs.push_back(r.variables[0].value_unwatched().reshape({-1}).to_vector<float>());
  }
  EXPECT_EQ(runs[0], runs[1]);
}

// A model built on the calling thread (the replicas share its variables) and what a custom step needs.
struct CustomStep {
  explicit CustomStep(const Tensor& x) : model(make_model()) {
    autodiff::SuspendRecording build;
    model(x.slice(0, 0, 1));
    vars = model.trainable_variables();
  }
  Sequential model;
  losses::SparseCategoricalCrossentropy loss_fn;
  optimizers::SGD sgd{{.learning_rate = 0.3}};
  std::vector<Variable> vars;
};

TEST(Mirrored, ApplyingUnaveragedGradientsInsideRunIsAnErrorNamingTheFix) {
  auto [x, y] = data(32);
  CustomStep parts(x);
  auto& [model, loss_fn, sgd, vars] = parts;
  MirroredStrategy mirrored(2);
  auto scope = mirrored.scope();
  std::vector<float> before = vars[0].value_unwatched().reshape({-1}).to_vector<float>();
  std::string message;
  try {
    mirrored.run(
        [&](const Tensor& xb, const Tensor& yb) {
          GradientTape tape;
          Tensor loss = loss_fn(yb, model(xb, true));
          sgd.apply_gradients(tape.gradient(loss, std::vector<GradSource>(vars.begin(), vars.end())), vars);
        },
        x, y);
  } catch (const ValueError& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("replica 1's gradient for"), std::string::npos) << "message: " << message;
  EXPECT_NE(message.find("strategy.gradient()"), std::string::npos) << message;
  EXPECT_EQ(vars[0].value_unwatched().reshape({-1}).to_vector<float>(), before) << "nothing was applied";
}

// Replicas that do not make the same cross-replica calls end the step with an error naming what went
// wrong, instead of leaving the others waiting.
TEST(Mirrored, RunEndsWithAnErrorWhenReplicasDoNotMeet) {
  auto [x, y] = data(32);
  CustomStep parts(x);
  auto& [model, loss_fn, sgd, vars] = parts;
  MirroredStrategy mirrored(2);
  auto scope = mirrored.scope();
  auto message_of = [&](auto step) {
    try {
      mirrored.run(step, x, y);
    } catch (const StateError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // Replica 1 returns without averaging its gradients: replica 0 would wait for it forever.
  std::string returned = message_of([&](const Tensor& xb, const Tensor& yb) {
    if (current_replica_context()->replica_id() == 1) return;
    GradientTape tape;
    Tensor loss = loss_fn(yb, model(xb, true));
    mirrored.gradient(tape, loss, vars);
  });
  EXPECT_NE(returned.find("replica(s) 1 returned from the step while the others wait in a cross-replica sum"),
            std::string::npos) << returned;
  // Replica 1 applies while replica 0 averages.
  std::string crossed = message_of([&](const Tensor& xb, const Tensor& yb) {
    GradientTape tape;
    Tensor loss = loss_fn(yb, model(xb, true));
    std::vector<Tensor> grads = tape.gradient(loss, std::vector<GradSource>(vars.begin(), vars.end()));
    if (current_replica_context()->replica_id() == 0) {
      mirrored.reduce_gradients(grads);
    } else {
      sgd.apply_gradients(grads, vars);
    }
  });
  // Whichever came first, the other one is told.
  EXPECT_NE(crossed.find("while other replicas wait in a"), std::string::npos) << crossed;
  EXPECT_NE(crossed.find("every replica must make the same cross-replica calls in the same order"), std::string::npos)
      << crossed;
  // Replicas summing tensors of different shapes.
  std::string shapes = message_of([&](const Tensor&, const Tensor&) {
    cross_replica_sum(zeros({current_replica_context()->replica_id() + 1}));
  });
  EXPECT_NE(shapes.find("replica 1 passed [2] f32 to a cross-replica sum where another passed [1] f32"),
            std::string::npos) << shapes;
  // The strategy works again afterwards.
  PerReplica<Tensor> rows = mirrored.run([](const Tensor& xb) { return full({1}, static_cast<double>(xb.dim(0))); }, x);
  EXPECT_EQ(mirrored.reduce(Reduction::kSum, rows).item(), 32.0);
}

TEST(Mirrored, RunSplitsOnlyTheBatchAndRefusesCheckpointsOnReplicaThreads) {
  MirroredStrategy mirrored(2);
  Tensor batch = zeros({6, 2}), scale = full({}, 3.0);
  PerReplica<std::string> seen = mirrored.run(
      [](const Tensor& part, const Tensor& s) { return std::to_string(part.dim(0)) + "x" + std::to_string(s.rank()); },
      batch, scale);
  EXPECT_EQ(seen.values, (std::vector<std::string>{"3x0", "3x0"})) << "the scalar reaches both whole";
  EXPECT_THROW(mirrored.run([](const Tensor&, const Tensor&) {}, batch, zeros({5})), ValueError);
  std::string dir = temp_path("refuse");
  Sequential model = make_model();
  {
    autodiff::SuspendRecording build;
    model(zeros({1, 8}));
  }
  CheckpointManager ckpt(dir, model);
  auto scope = mirrored.scope();
  EXPECT_THROW(mirrored.run([&](const Tensor&) { ckpt.save(1); }, batch), StateError);
  EXPECT_TRUE(ckpt.checkpoints().empty());
  std::filesystem::remove_all(dir);
}

TEST(Mirrored, OneReplicaAtLeast) {
  EXPECT_THROW(MirroredStrategy(0), ValueError);
  EXPECT_THROW(MirroredStrategy(std::vector<Device>{}), ValueError);
  // A GPU this process does not have (cuda:0 without one): a DeviceError naming it, at once.
  Device missing = Device::cuda(cuda_device_count());
  try {
    MirroredStrategy strategy({kCPU, missing});
    FAIL() << "MirroredStrategy accepted " << missing.str();
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find(missing.str()), std::string::npos) << e.what();
  }
}

// NCCL sums across devices only when every device is a distinct GPU; asking for it elsewhere is an error
// that names the devices.
TEST(Mirrored, CrossDeviceOpsFollowTheDevices) {
  EXPECT_EQ(MirroredStrategy(2).cross_device_ops(), CrossDeviceOps::kReductionToOneDevice);
  EXPECT_EQ(MirroredStrategy({kCPU, kCPU}).cross_device_ops(), CrossDeviceOps::kReductionToOneDevice);
  try {
    MirroredStrategy strategy({kCPU, kCPU}, CrossDeviceOps::kNcclAllReduce);
    FAIL() << "NCCL accepted for CPU devices";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("cpu, cpu"), std::string::npos) << e.what();
  }
}

// MirroredStrategy over devices gives each replica its own copy of every variable (here two CPU
// "devices", so that the copies are exercised without GPUs): the same numbers as replicas sharing the
// variables, for fit (also with SyncBatchNormalization, whose shift reads the moving mean's copies) and
// for a custom loop, with the copies really separate and equal to the variables after training.
TEST(Mirrored, ReplicasWithTheirOwnCopiesTrainAsReplicasSharingTheVariables) {
  auto [x, y] = data(8 * 2 * 3 + 5);  // a short last step
  for (auto [sync_bn, accumulate] : {std::pair{false, 1}, {true, 1}, {true, 2}}) {
    auto fit_under = [&](MirroredStrategy& strategy) {
      set_seed(3);
      reset_layer_names();
      auto scope = strategy.scope();
      Sequential model = make_model(sync_bn);
      model.fit(x, y, {.epochs = 2, .batch_size = 8, .shuffle = false, .verbose = 0,
                       .gradient_accumulation_steps = accumulate});
      return std::pair{model, model.evaluate(x, y)};
    };
    MirroredStrategy shared(2), copies(std::vector<Device>{kCPU, kCPU});
    auto [shared_model, shared_eval] = fit_under(shared);
    auto [copies_model, copies_eval] = fit_under(copies);
    EXPECT_EQ(max_relative_difference(copies_model.variables(), shared_model.variables()), 0)
        << "sync_bn " << sync_bn << ", accumulating " << accumulate;
    EXPECT_EQ(copies_eval["loss"], shared_eval["loss"]);
    for (const Variable& v : copies_model.variables()) {
      ASSERT_TRUE(v.mirrored()) << v.name();
      Tensor primary = v.value_unwatched();
      MirrorReplicaScope replica_1(1);
      EXPECT_NE(v.value_unwatched().raw_data(), primary.raw_data()) << v.name() << ": replica 1 has no copy of its own";
      EXPECT_EQ(v.value_unwatched().to_vector<float>(), primary.to_vector<float>()) << v.name();
    }
  }
  MirroredStrategy shared(2), copies(std::vector<Device>{kCPU, kCPU});
  for (bool strategy_gradient : {true, false}) {
    CustomLoopResult a = custom_loop(shared, x.slice(0, 0, 48), y.slice(0, 0, 48), 8, strategy_gradient);
    CustomLoopResult b = custom_loop(copies, x.slice(0, 0, 48), y.slice(0, 0, 48), 8, strategy_gradient);
    EXPECT_EQ(max_relative_difference(b.variables, a.variables), 0);
    EXPECT_EQ(b.losses, a.losses);
    for (const Variable& v : b.variables) EXPECT_TRUE(v.mirrored()) << v.name();
  }
  // Inside run, each replica reads its own copy.
  Sequential model = make_model();
  model(x.slice(0, 0, 1));
  auto scope = copies.scope();
  copies.broadcast_variables(model.variables());
  Variable kernel = model.trainable_variables()[0];
  PerReplica<const void*> read = copies.run([&]() -> const void* { return kernel.value_unwatched().raw_data(); });
  ASSERT_EQ(read.values.size(), 2u);
  EXPECT_EQ(read.values[0], kernel.value_unwatched().raw_data());
  EXPECT_NE(read.values[1], read.values[0]);
}

}  // namespace
}  // namespace gradflow::strategies
