// One rank of the data-parallel equivalence test, started by mpirun (MPI) or gfrun (Gloo): N replicas with
// per-replica batch B must end with the same weights as one replica with batch N*B after the same steps
// (no dropout, SGD; 1e-5 relative), with fit() and with a custom GradientTape loop, including uneven last
// batches where some replicas get no rows; evaluate() must report the single-replica values on every rank.
// Prints "rank R: ... ok" lines; exits 0 when everything matched, 1 otherwise.
// With DP_RANK_DIES=R, rank R instead exits in the middle of a long fit, with status 0 so that the
// launcher does not step in: the others must fail by themselves with the communicator's error (exit 4)
// rather than hang (DP_SHARD_UPDATE=1: with the update split between the ranks).
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>
#include <fstream>

#include "core/checkpoint/checkpoint.h"
#include "core/trace/trace.h"
#include "nlohmann/json.hpp"

#include "strategies/data_parallel.h"
#include "tests/strategies/replica_checks.h"

namespace gradflow {
namespace {

using testing::check;

Sequential make_model() {
  return Sequential({Dense(16, {.activation = "relu"}), Dense(4, {.activation = "softmax"})});
}

using testing::max_relative_difference;

// n examples, per-replica batch b (accumulating k batches per update): fit under the strategy vs. one
// replica with batch b * replicas * k.
void fit_matches_single_replica(strategies::Strategy& strategy, int64_t n, int64_t b, int k = 1,
                                double tolerance = 1e-5) {
  int rank = strategy.replica_id(), replicas = strategy.num_replicas_in_sync();
  Tensor x = random_uniform({n, 8}, -1, 1, kF32, kCPU, 11);
  Tensor y = random_uniform({n}, 0, 4, kF32, kCPU, 12).to(kI64);
  set_seed(7);
  Sequential distributed = make_model();
  distributed.compile(std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 0.5}),
                      "sparse_categorical_crossentropy", {"accuracy"});
  Logs dist_eval;
  {
    auto scope = strategy.scope();
    distributed.fit(x, y, {.epochs = 2, .batch_size = b, .shuffle = false, .verbose = 0, .gradient_accumulation_steps = k});
    dist_eval = distributed.evaluate(x, y, {.batch_size = 7});
  }
  set_seed(7);
  Sequential single = make_model();
  single.compile(std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 0.5}),
                 "sparse_categorical_crossentropy", {"accuracy"});
  single.fit(x, y, {.epochs = 2, .batch_size = b * replicas * k, .shuffle = false, .verbose = 0});
  Logs single_eval = single.evaluate(x, y, {.batch_size = 7});
  double diff = max_relative_difference(distributed.variables(), single.variables());
  check(diff < tolerance, rank, str_cat("fit n=", n, " b=", b, " k=", k, ": max relative weight difference ", diff));
  check(std::abs(dist_eval["loss"] - single_eval["loss"]) < 1e-5 &&
            std::abs(dist_eval["accuracy"] - single_eval["accuracy"]) < 1e-9,
        rank, str_cat("evaluate n=", n, ": loss ", dist_eval["loss"], " vs ", single_eval["loss"], ", accuracy ",
                      dist_eval["accuracy"], " vs ", single_eval["accuracy"]));
}

// The custom-loop forms: each replica's gradients on its rows, then reduce_gradients (after backward)
// or strategy.gradient (overlapped with backward), then apply.
enum class Loop { kReduceGradients, kStrategyGradient };
void custom_loop_matches_single_replica(strategies::Strategy& strategy, Loop form) {
  int rank = strategy.replica_id(), replicas = strategy.num_replicas_in_sync();
  int64_t b = 6, n = b * replicas * 5;
  Tensor x = random_uniform({n, 8}, -1, 1, kF32, kCPU, 21);
  Tensor y = random_uniform({n}, 0, 4, kF32, kCPU, 22).to(kI64);
  auto run = [&](bool distributed) {
    set_seed(9);
    Sequential model = make_model();
    {
      autodiff::SuspendRecording build;  // layers build from their first input
      model(x.slice(0, 0, 1));
    }
    if (distributed) strategy.broadcast_variables(model.variables());
    optimizers::SGD sgd({.learning_rate = 0.5});
    losses::SparseCategoricalCrossentropy loss_fn;
    for (int64_t step = 0; step < n / (b * replicas); ++step) {
      int64_t lo = step * b * replicas;
      Tensor xb = distributed ? x.slice(0, lo + rank * b, lo + (rank + 1) * b) : x.slice(0, lo, lo + b * replicas);
      Tensor yb = distributed ? y.slice(0, lo + rank * b, lo + (rank + 1) * b) : y.slice(0, lo, lo + b * replicas);
      std::vector<Variable> vars = model.trainable_variables();
      GradientTape tape;
      Tensor loss = loss_fn(yb, model(xb, true));
      std::vector<Tensor> grads;
      if (distributed && form == Loop::kStrategyGradient) {
        grads = strategy.gradient(tape, loss, vars);
      } else {
        grads = tape.gradient(loss, std::vector<GradSource>(vars.begin(), vars.end()));
        if (distributed) grads = strategy.reduce_gradients(grads);
      }
      sgd.apply_gradients(grads, vars);
    }
    return model;
  };
  Sequential distributed = run(true), single = run(false);
  double diff = max_relative_difference(distributed.variables(), single.variables());
  check(diff < 1e-5, rank, str_cat(form == Loop::kStrategyGradient ? "custom loop, strategy.gradient"
                                                                    : "custom loop, reduce_gradients",
                                   ": max relative weight difference ", diff));
}

// Variables without a gradient: one no replica uses gets an undefined gradient everywhere (the optimizer
// skips it); one only replica 0 uses gets replica 0's gradient averaged with the others' zeros. No hang.
void unused_variables_are_handled(strategies::Strategy& strategy) {
  int rank = strategy.replica_id(), replicas = strategy.num_replicas_in_sync();
  Variable w(from_vector<float>({1, 2, 3}), "w");
  Variable unused(from_vector<float>({5, 5}), "unused_everywhere");
  Variable only_rank0(from_vector<float>({1, 1, 1, 1}), "only_on_rank_0");
  std::vector<Variable> vars{w, unused, only_rank0};
  for (int step = 0; step < 3; ++step) {
    GradientTape tape;
    Tensor loss = sum(square(w.value())) * static_cast<double>(rank + 1);
    if (rank == 0) loss = loss + sum(only_rank0.value()) * 0.5;
    std::vector<Tensor> grads = strategy.gradient(tape, loss, vars);
    bool ok = grads.size() == 3 && grads[0].defined() && !grads[1].defined() && grads[2].defined();
    if (ok) {
      // d/dw of (r+1)*sum(w^2), averaged: 2w * mean(r+1) = 2w * (replicas+1)/2.
      std::vector<float> gw = grads[0].to_vector<float>(), g0 = grads[2].to_vector<float>();
      for (int i = 0; i < 3; ++i) ok = ok && std::abs(gw[i] - 2.0f * (i + 1) * (replicas + 1) / 2.0f) < 1e-5f;
      for (float v : g0) ok = ok && std::abs(v - 0.5f / replicas) < 1e-6f;
    }
    check(ok, rank, str_cat("unused variables, step ", step));
  }
}

// SyncBatchNormalization: N replicas with per-replica batch B train as one replica with batch N x B and
// plain BatchNormalization (weights and moving statistics), also when the last step leaves some
// replicas without rows (they still run the statistics' collectives). Accumulating k batches, the
// statistics are those of each global batch of N x B (not of N x B x k): it must not hang and must
// keep the replicas identical.
void sync_batch_norm_matches_single_replica(strategies::Strategy& strategy, int64_t n, int k) {
  int rank = strategy.replica_id(), replicas = strategy.num_replicas_in_sync();
  Tensor x = random_uniform({n, 8}, -1, 1, kF32, kCPU, 51) * 3.0 + 1.0;
  Tensor y = random_uniform({n}, 0, 4, kF32, kCPU, 52).to(kI64);
  auto make = [](bool sync) {
    BatchNormalizationOptions bn{.momentum = 0.8};
    return Sequential({Dense(16), sync ? SyncBatchNormalization(bn) : BatchNormalization(bn), Activation("relu"),
                       Dense(4, {.activation = "softmax"})});
  };
  auto compile = [](Sequential& m) {
    m.compile(std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 0.2}),
              "sparse_categorical_crossentropy");
  };
  set_seed(13);
  Sequential distributed = make(true);
  compile(distributed);
  {
    auto scope = strategy.scope();
    distributed.fit(x, y, {.epochs = 2, .batch_size = 8, .shuffle = false, .verbose = 0, .gradient_accumulation_steps = k});
  }
  set_seed(13);
  Sequential single = make(false);
  compile(single);
  single.fit(x, y, {.epochs = 2, .batch_size = 8 * replicas * k, .shuffle = false, .verbose = 0});
  if (k == 1) {
    double diff = max_relative_difference(distributed.variables(), single.variables());
    check(diff < 1e-4, rank, str_cat("SyncBatchNormalization n=", n, ": max relative difference ", diff,
                                     " (weights and moving statistics)"));
    return;
  }
  std::vector<double> mine;
  for (const Variable& v : distributed.variables()) {
    for (double d : v.value_unwatched().to(kF64).reshape({-1}).to_vector<double>()) mine.push_back(d);
  }
  Tensor t = from_vector<double>(mine, {static_cast<int64_t>(mine.size())});
  auto* dp = dynamic_cast<strategies::DataParallelStrategy*>(&strategy);
  std::vector<double> lo = dp->communicator().all_reduce({t}, {.op = distributed::ReduceOp::kMin})->result()[0].to_vector<double>();
  check(lo == mine, rank, str_cat("SyncBatchNormalization n=", n, " k=", k, ": replicas identical"));
}

// Plain BatchNormalization: each replica's moving statistics come from its own rows; at the epoch's end
// fit replaces them by the replicas' mean (VariableAggregation::kMean), before epoch-end callbacks and
// validation see them, and a sharded checkpoint saves (and leaves) that mean too.
class RecordStatistics : public Callback {
 public:
  void on_train_batch_end(int64_t, const Logs&) override { before = values(); }
  void on_epoch_end(int, const Logs&) override { at_epoch_end = values(); }
  std::vector<double> before, at_epoch_end;

 private:
  std::vector<double> values() const {
    std::vector<double> out;
    for (const Variable& v : model_->variables()) {
      if (v.aggregation() != VariableAggregation::kMean) continue;
      for (double d : v.value_unwatched().to(kF64).reshape({-1}).to_vector<double>()) out.push_back(d);
    }
    return out;
  }
};

void batch_norm_statistics_are_averaged(strategies::DataParallelStrategy& strategy) {
  int rank = strategy.replica_id(), replicas = strategy.num_replicas_in_sync();
  Tensor x = random_uniform({8 * replicas * 3, 8}, -1, 1, kF32, kCPU, 91) * 3.0 + 1.0;
  Tensor y = random_uniform({8 * replicas * 3}, 0, 4, kF32, kCPU, 92).to(kI64);
  Sequential model({Dense(16), BatchNormalization({.momentum = 0.8}), Activation("relu"), Dense(4, {.activation = "softmax"})});
  model.compile("sgd", "sparse_categorical_crossentropy");
  auto record = std::make_shared<RecordStatistics>();
  auto scope = strategy.scope();
  model.fit(x, y, {.epochs = 1, .batch_size = 8, .callbacks = {record}, .shuffle = false, .verbose = 0});
  auto all_reduce = [&](const std::vector<double>& v, distributed::ReduceOp op) {
    Tensor t = from_vector<double>(v, {static_cast<int64_t>(v.size())});
    return strategy.communicator().all_reduce({t}, {.op = op})->result()[0].to_vector<double>();
  };
  std::vector<double> sums = all_reduce(record->before, distributed::ReduceOp::kSum);
  double worst = 0;
  for (size_t i = 0; i < sums.size(); ++i) {
    worst = std::max(worst, std::abs(record->at_epoch_end[i] - sums[i] / replicas) / std::max(1.0, std::abs(sums[i])));
  }
  check(record->before.size() == 32 && worst < 1e-6, rank,
        str_cat("BatchNormalization's moving statistics at the epoch's end are the replicas' mean (", record->before.size(),
                " values, max relative difference ", worst, ")"));
  check(all_reduce(record->at_epoch_end, distributed::ReduceOp::kMin) == record->at_epoch_end, rank,
        "BatchNormalization's moving statistics are identical on every replica after the epoch");
  check(all_reduce(record->before, distributed::ReduceOp::kMin) != record->before || rank != 0, rank,
        "each replica's own rows gave it different moving statistics during the epoch (the test's premise)");
  // A sharded checkpoint (collective) saves the mean, leaves each replica its own values (saving never
  // changes the run), and restoring it gives every replica the mean.
  const double job = strategy.reduce(strategies::Reduction::kSum, full({1}, rank == 0 ? ::getpid() : 0, kF64)).item();
  std::string dir = str_cat("/tmp/gradflow_dp_bn_mean_", static_cast<int64_t>(job));
  if (rank == 0) std::filesystem::remove_all(dir);
  strategy.reduce(strategies::Reduction::kSum, zeros({1}));  // a barrier: the directory is clean
  Variable moving_mean;
  for (const Variable& v : model.variables()) {
    if (v.name().find("moving_mean") != std::string::npos) moving_mean = v;
  }
  moving_mean.assign(moving_mean.value_unwatched() + static_cast<double>(rank));  // replicas differ again
  std::vector<double> own = moving_mean.value_unwatched().to(kF64).to_vector<double>();
  CheckpointManager(dir, model).save(1);
  check(moving_mean.value_unwatched().to(kF64).to_vector<double>() == own, rank,
        "a sharded checkpoint leaves each replica its own moving statistics");
  CheckpointManager(dir, model).restore_latest();
  std::vector<double> restored = moving_mean.value_unwatched().to(kF64).to_vector<double>();
  double off = 0;
  for (size_t i = 0; i < restored.size(); ++i) {
    off = std::max(off, std::abs(restored[i] - (record->at_epoch_end[i] + (replicas - 1) / 2.0)));
  }
  check(off < 1e-5, rank, str_cat("the checkpoint holds the replicas' mean of the moving statistics (off by ", off, ")"));
  strategy.reduce(strategies::Reduction::kSum, zeros({1}));
  if (rank == 0) std::filesystem::remove_all(dir);
}

// A callback that nudges one weight on one rank: replicas that stop being identical.
class Diverge : public Callback {
 public:
  explicit Diverge(int64_t at) : at_(at) {}
  void on_train_batch_end(int64_t step, const Logs&) override {
    if (step != at_) return;
    Variable v = model_->trainable_variables()[0];
    v.assign(v.value_unwatched() + 1e-3);
  }

 private:
  int64_t at_;
};

// Accumulating with batch-level BackupAndRestore saves (collective) on data that runs out on some
// replicas first: every replica must save at the same steps, or the job would hang.
void accumulation_with_batch_saves_on_uneven_data(strategies::Strategy& strategy) {
  int rank = strategy.replica_id(), replicas = strategy.num_replicas_in_sync();
  // Named after rank 0's process id (summed to every rank), so that jobs running at once (ctest -j) never
  // share it.
  const double job = strategy.reduce(strategies::Reduction::kSum, full({1}, rank == 0 ? ::getpid() : 0, kF64)).item();
  std::string dir = str_cat("/tmp/gradflow_dp_accum_saves_", static_cast<int64_t>(job));
  if (rank == 0) std::filesystem::remove_all(dir);
  strategy.reduce(strategies::Reduction::kSum, zeros({1}));  // a barrier: the directory is clean
  Tensor x = random_uniform({8 * replicas * 3 + 3, 8}, -1, 1, kF32, kCPU, 81);
  Tensor y = random_uniform({8 * replicas * 3 + 3}, 0, 4, kF32, kCPU, 82).to(kI64);
  Sequential model = make_model();
  model.compile("sgd", "sparse_categorical_crossentropy");
  {
    auto scope = strategy.scope();
    model.fit(x, y, {.epochs = 2, .batch_size = 8, .callbacks = {BackupAndRestore(dir, {.save_freq = "1"})},
                     .verbose = 0, .gradient_accumulation_steps = 2});
  }
  check(true, rank, "accumulating with batch-level saves on uneven data finishes on every rank");
  strategy.reduce(strategies::Reduction::kSum, zeros({1}));
  if (rank == 0) std::filesystem::remove_all(dir);
}

// strategy.run / reduce, and the replica-identity check catching a replica that diverged.
void run_reduce_and_divergence_check(strategies::DataParallelStrategy& strategy) {
  int rank = strategy.replica_id(), replicas = strategy.num_replicas_in_sync();
  auto scope = strategy.scope();
  strategies::PerReplica<Tensor> mine =
      strategy.run([&](double scale) { return full({2}, (rank + 1) * scale, kF64); }, 2.0);
  double expected_sum = replicas * (replicas + 1.0);  // sum of 2(r+1)
  check(mine.values.size() == 1 &&
            strategy.reduce(strategies::Reduction::kSum, mine).to_vector<double>() ==
                std::vector<double>(2, expected_sum) &&
            strategy.reduce(strategies::Reduction::kMean, mine).to_vector<double>() ==
                std::vector<double>(2, expected_sum / replicas) &&
            strategy.reduce(strategies::Reduction::kMean, mine.values[0]).to_vector<double>() ==
                std::vector<double>(2, expected_sum / replicas),
        rank, "strategy.run (one value per process) and strategy.reduce (sum, mean)");

  strategies::DataParallelOptions saved = strategy.options();
  strategies::DataParallelOptions verify = saved;
  verify.verify_replicas_every = 1;
  strategy.set_options(verify);
  Tensor x = random_uniform({64, 8}, -1, 1, kF32, kCPU, 61), y = random_uniform({64}, 0, 4, kF32, kCPU, 62).to(kI64);
  Sequential model = make_model();
  model.compile("sgd", "sparse_categorical_crossentropy");
  std::vector<CallbackPtr> callbacks;
  if (rank == replicas - 1) callbacks.push_back(std::make_shared<Diverge>(1));
  std::string error;
  try {
    model.fit(x, y, {.epochs = 1, .batch_size = 4, .callbacks = callbacks, .verbose = 0});
  } catch (const StateError& e) {
    error = e.what();
  }
  check(error.find("replicas diverged") != std::string::npos && error.find("rank(s) " + std::to_string(replicas - 1)) != std::string::npos &&
            error.find("'dense") != std::string::npos,
        rank, str_cat("a replica that diverged is caught on every rank: ", error));
  strategy.set_options(saved);
}

// Gradients compressed to f16 or bf16 on the wire: every replica still applies the identical update
// (weights bitwise equal across ranks), and training follows the uncompressed single replica closely.
void compressed_gradients_stay_identical(strategies::DataParallelStrategy& strategy) {
  int rank = strategy.replica_id(), replicas = strategy.num_replicas_in_sync();
  strategies::DataParallelOptions saved = strategy.options();
  Tensor x = random_uniform({96, 8}, -1, 1, kF32, kCPU, 41);
  Tensor y = random_uniform({96}, 0, 4, kF32, kCPU, 42).to(kI64);
  for (auto [compression, name] : {std::pair{strategies::GradientCompression::kFloat16, "f16"},
                                   std::pair{strategies::GradientCompression::kBFloat16, "bf16"}}) {
    strategy.set_options({.compression = compression});
    auto train = [&](bool distributed) {
      set_seed(8);
      Sequential model = make_model();
      model.compile(std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 0.5}),
                    "sparse_categorical_crossentropy");
      if (distributed) {
        auto scope = strategy.scope();
        model.fit(x, y, {.epochs = 2, .batch_size = 8, .shuffle = false, .verbose = 0});
      } else {
        model.fit(x, y, {.epochs = 2, .batch_size = 8 * replicas, .shuffle = false, .verbose = 0});
      }
      return model;
    };
    Sequential compressed = train(true), exact = train(false);
    std::vector<double> mine;
    double worst = 0;
    std::vector<Variable> a = compressed.variables(), b = exact.variables();
    for (size_t i = 0; i < a.size(); ++i) {
      std::vector<double> u = a[i].value_unwatched().to(kF64).reshape({-1}).to_vector<double>();
      std::vector<double> v = b[i].value_unwatched().to(kF64).reshape({-1}).to_vector<double>();
      for (size_t k = 0; k < u.size(); ++k) worst = std::max(worst, std::abs(u[k] - v[k]));
      mine.insert(mine.end(), u.begin(), u.end());
    }
    Tensor t = from_vector<double>(mine, {static_cast<int64_t>(mine.size())});
    auto& comm = strategy.communicator();
    std::vector<double> lo = comm.all_reduce({t}, {.op = distributed::ReduceOp::kMin})->result()[0].to_vector<double>();
    std::vector<double> hi = comm.all_reduce({t}, {.op = distributed::ReduceOp::kMax})->result()[0].to_vector<double>();
    check(lo == mine && hi == mine, rank, str_cat(name, " on the wire: weights bitwise equal on every rank"));
    // Above float32's rounding (so the gradients really travelled in 16 bits), well below the weights' scale.
    check(worst > 1e-6 && worst < 0.05, rank,
          str_cat(name, " on the wire: largest weight difference from uncompressed ", worst));
  }
  strategy.set_options(saved);
}

// With buckets small enough that the model needs several, and with overlap on and off, fit gives the
// same weights; with overlap on, the buckets of the last layers start inside backward (the timeline's
// "start all_reduce" marks fall within the "backward" bar), which is what lets them overlap it.
void buckets_start_during_backward(strategies::DataParallelStrategy& strategy) {
  int rank = strategy.replica_id();
  strategies::DataParallelOptions saved = strategy.options();
  Tensor x = random_uniform({64, 8}, -1, 1, kF32, kCPU, 31);
  Tensor y = random_uniform({64}, 0, 4, kF32, kCPU, 32).to(kI64);
  std::vector<std::vector<double>> weights;
  for (bool overlap : {true, false}) {
    strategy.set_options({.bucket_bytes = 300, .overlap = overlap});
    set_seed(5);
    Sequential model = make_model();
    model.compile(std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 0.5}),
                  "sparse_categorical_crossentropy");
    std::string trace_path = str_cat("/tmp/gradflow_dp_trace_", ::getpid(), ".json");
    {
      auto scope = strategy.scope();
      trace::start(str_cat("rank ", rank));
      model.fit(x, y, {.epochs = 1, .batch_size = 8, .shuffle = false, .verbose = 0});
      trace::stop_and_write(trace_path);
    }
    std::vector<double> all;
    for (const Variable& v : model.variables()) {
      for (double d : v.value_unwatched().to(kF64).reshape({-1}).to_vector<double>()) all.push_back(d);
    }
    weights.push_back(all);
    if (!overlap) continue;
    std::ifstream in(trace_path);
    nlohmann::json trace = nlohmann::json::parse(in);
    std::filesystem::remove(trace_path);
    std::vector<std::pair<double, double>> backward;
    std::vector<double> starts;
    int ops = 0;
    for (const auto& e : trace["traceEvents"]) {
      if (e["ph"] != "X") continue;
      if (e["name"] == "backward") backward.emplace_back(e["ts"].get<double>(), e["ts"].get<double>() + e["dur"].get<double>());
      if (e["name"] == "start all_reduce") starts.push_back(e["ts"].get<double>());
      if (e["name"] == "all_reduce" && e["cat"] == "communication") ++ops;
    }
    int inside = 0;
    for (double t : starts) {
      for (auto [b, end] : backward) inside += t >= b && t <= end;
    }
    // 64 / (8 x replicas) steps, then one with no rows anywhere (that ends the epoch). The 4 variables
    // (kernel 512 B, bias 64 B, kernel 256 B, bias 16 B, last first) make 3 buckets of at most 300 B:
    // [bias 2, kernel 2], [bias 1], [kernel 1 + the metadata]; each starts as soon as backward has
    // produced its gradients, so the first 2 inside each step's backward bar; the last one (which backward
    // completes with its very last gradient) and the empty step's after it.
    const size_t steps = 64 / (8 * strategy.num_replicas_in_sync());
    check(backward.size() == steps && ops >= 3 * static_cast<int>(steps) && inside == 2 * static_cast<int>(steps) &&
              starts.size() == 3 * (steps + 1),
          rank, str_cat("timeline: ", backward.size(), " backward bars, ", ops, " all_reduce ops, ", inside, " of ",
                        starts.size(), " bucket starts inside backward"));
  }
  check(weights[0] == weights[1], rank, "overlap on and off give bitwise the same weights");
  strategy.set_options(saved);
}

// With compression the metadata rides in a bucket of its own after the gradients' bucket. That bucket
// is still the last of gradients: backward completes it with its very last gradient, so it starts after
// backward on the training thread (blocking), not inside backward on the progress thread, where it only
// competed with the step for the core.
void compressed_last_bucket_runs_on_the_training_thread(strategies::DataParallelStrategy& strategy) {
  int rank = strategy.replica_id();
  strategies::DataParallelOptions saved = strategy.options();
  strategy.set_options({.compression = strategies::GradientCompression::kBFloat16});
  Tensor x = random_uniform({64, 8}, -1, 1, kF32, kCPU, 31);
  Tensor y = random_uniform({64}, 0, 4, kF32, kCPU, 32).to(kI64);
  set_seed(5);
  Sequential model = make_model();
  model.compile(std::make_shared<optimizers::SGD>(), "sparse_categorical_crossentropy");
  std::string trace_path = str_cat("/tmp/gradflow_dp_trace_", ::getpid(), ".json");
  {
    auto scope = strategy.scope();
    trace::start(str_cat("rank ", rank));
    model.fit(x, y, {.epochs = 1, .batch_size = 8, .shuffle = false, .verbose = 0});
    trace::stop_and_write(trace_path);
  }
  std::ifstream in(trace_path);
  nlohmann::json trace = nlohmann::json::parse(in);
  std::filesystem::remove(trace_path);
  std::vector<std::pair<double, double>> backward;
  std::vector<double> starts;
  std::set<int64_t> training_threads, communicating_threads;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] != "X") continue;
    if (e["name"] == "backward") {
      backward.emplace_back(e["ts"].get<double>(), e["ts"].get<double>() + e["dur"].get<double>());
      training_threads.insert(e["tid"].get<int64_t>());
    }
    if (e["name"] == "start all_reduce") starts.push_back(e["ts"].get<double>());
    // Only ops that began in this trace: the previous check's last async op can end just after it starts
    // (its span closes after its Work completed).
    if (e["name"] == "all_reduce" && e["cat"] == "communication" && e["ts"].get<double>() >= 0) {
      communicating_threads.insert(e["tid"].get<int64_t>());
    }
  }
  int inside = 0;
  for (double t : starts) {
    for (auto [b, end] : backward) inside += t >= b && t <= end;
  }
  check(!backward.empty() && inside == 0 && training_threads.size() == 1 && communicating_threads == training_threads,
        rank, str_cat("compression: ", inside, " of ", starts.size(), " bucket starts inside backward, all-reduces on ",
                      communicating_threads.size(), " thread(s), the training thread among them: ",
                      communicating_threads == training_threads));
  strategy.set_options(saved);
}

// balance_load: each step's global batch split by the replicas' measured speeds (timing noise makes the
// splits uneven here). Whatever the split, the update is the single replica's with the global batch, and
// every rank holds the same speeds, which decide the split. (The split rule itself: load_balance_test.)
void load_balancing_keeps_the_update(strategies::DataParallelStrategy& strategy) {
  int rank = strategy.replica_id(), replicas = strategy.num_replicas_in_sync();
  strategies::DataParallelOptions saved = strategy.options();
  strategies::DataParallelOptions balanced = saved;
  balanced.balance_load = true;
  strategy.set_options(balanced);
  // Unequal parts round differently from equal ones (each replica's mean is over its own rows): 1e-4.
  fit_matches_single_replica(strategy, 8 * replicas * 6 + 5, 8, 1, 1e-4);
  std::vector<double> speeds = strategy.replica_speeds();
  check(static_cast<int>(speeds.size()) == replicas, rank, str_cat("balance_load: ", speeds.size(), " speeds measured"));
  // Rows per second of real steps: the empty step that ends each epoch must not count as a blazing one.
  bool plausible = true;
  for (double v : speeds) plausible &= v > 0 && v < 1e7;
  check(plausible, rank, str_cat("balance_load: plausible speeds (", speeds.empty() ? 0.0 : speeds[0], " rows/s, ...)"));
  Tensor mine = from_vector<double>(speeds.size() == static_cast<size_t>(replicas) ? speeds
                                                                                     : std::vector<double>(replicas, 0.0));
  Tensor lo = strategy.communicator().all_reduce({mine}, {.op = distributed::ReduceOp::kMin})->result()[0];
  Tensor hi = strategy.communicator().all_reduce({mine}, {.op = distributed::ReduceOp::kMax})->result()[0];
  check(lo.to_vector<double>() == hi.to_vector<double>() && lo.to_vector<double>()[0] > 0, rank,
        "balance_load: every rank holds the same replica speeds");
  strategy.set_options(saved);
}

// Every value of a list of variables, flattened into doubles.
std::vector<double> flatten(const std::vector<Variable>& vars) {
  std::vector<double> out;
  for (const Variable& v : vars) {
    for (double d : v.value_unwatched().to(kF64).reshape({-1}).to_vector<double>()) out.push_back(d);
  }
  return out;
}

// The optimizer's state at each epoch's end, as a checkpoint written then would see it.
class OptimizerStateRecorder : public Callback {
 public:
  explicit OptimizerStateRecorder(std::shared_ptr<optimizers::Optimizer> optimizer) : optimizer_(std::move(optimizer)) {}
  void on_epoch_end(int, const Logs&) override {
    std::vector<double> state = flatten(optimizer_->variables());
    seen.insert(seen.end(), state.begin(), state.end());
  }
  std::vector<double> seen;

 private:
  std::shared_ptr<optimizers::Optimizer> optimizer_;
};

// shard_update: the update split among the ranks (each updates its part; the optimizer's slots are one
// copy they share; the updated parts written into each other's variables) is the plain data-parallel
// update bit for bit: the weights, and the whole optimizer state every rank reads at each epoch's end
// (what a checkpoint saves) and after fit. Several buckets (300 bytes), a short last step with replicas
// without rows. Afterwards each rank's variables are its own again.
void split_update_matches_the_plain_one(strategies::DataParallelStrategy& strategy) {
  int rank = strategy.replica_id(), replicas = strategy.num_replicas_in_sync();
  strategies::DataParallelOptions saved = strategy.options();
  Tensor x = random_uniform({8 * replicas * 3 + 5, 8}, -1, 1, kF32, kCPU, 41);
  Tensor y = random_uniform({8 * replicas * 3 + 5}, 0, 4, kF32, kCPU, 42).to(kI64);
  // Where the ranks share no memory (shared memory off), optimizers with slots are not split.
  const bool shared_memory = strategy.communicator().allocate_shared(64).defined();
  using Make = std::function<std::shared_ptr<optimizers::Optimizer>()>;
  const std::vector<std::pair<std::string, Make>> optimizers_to_try = {
      {"adam", [] { return std::make_shared<optimizers::Adam>(optimizers::AdamOptions{.learning_rate = 0.01}); }},
      {"sgd with momentum", [] { return std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 0.1, .momentum = 0.9}); }},
      {"sgd", [] { return std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 0.5}); }},
  };
  for (const auto& [name, make] : optimizers_to_try) {
    std::vector<std::vector<double>> weights, state_at_epochs, state_after;
    std::vector<Variable> split_kernel;
    const int64_t splits_before = strategy.split_fits();
    for (bool shard : {false, true}) {
      strategy.set_options({.bucket_bytes = 300, .shard_update = shard});
      set_seed(5);
      Sequential model = make_model();
      std::shared_ptr<optimizers::Optimizer> optimizer = make();
      model.compile(optimizer, "sparse_categorical_crossentropy");
      auto recorder = std::make_shared<OptimizerStateRecorder>(optimizer);
      {
        auto scope = strategy.scope();
        model.fit(x, y, {.epochs = 2, .batch_size = 8, .callbacks = {recorder}, .shuffle = false, .verbose = 0});
      }
      weights.push_back(flatten(model.variables()));
      state_at_epochs.push_back(recorder->seen);
      state_after.push_back(flatten(optimizer->variables()));
      if (shard) split_kernel = {model.trainable_variables()[0]};
    }
    const bool split = strategy.split_fits() == splits_before + 1;
    const bool has_slots = name != "sgd";
    check(split == (shared_memory || !has_slots), rank,
          str_cat("shard_update with ", name, ": the update was ", split ? "" : "not ", "split"));
    // Bitwise where both sum in rank order (shared memory); with more ranks than cores, small all-reduces
    // go to MPI, which sums in an order of its own: then to rounding.
    const bool bitwise = replicas <= static_cast<int>(std::thread::hardware_concurrency());
    auto same = [&](const std::vector<double>& a, const std::vector<double>& b) {
      if (a.size() != b.size()) return false;
      if (bitwise) return a == b;
      for (size_t i = 0; i < a.size(); ++i) {
        if (std::abs(a[i] - b[i]) > 1e-5 * std::max(1.0, std::abs(b[i]))) return false;
      }
      return true;
    };
    check(same(weights[0], weights[1]), rank,
          str_cat("shard_update with ", name, ": ", bitwise ? "bitwise " : "", "the plain update's weights"));
    check(same(state_at_epochs[0], state_at_epochs[1]) && same(state_after[0], state_after[1]), rank,
          str_cat("shard_update with ", name, ": every rank reads the whole optimizer state, as without it"));
    // Its own copy again: what rank 0 writes now, the others do not see.
    if (rank == 0) split_kernel[0].assign(zeros_like(split_kernel[0].value_unwatched()));
    strategy.communicator().barrier()->wait();
    const bool zero = max(abs(split_kernel[0].value_unwatched())).item() == 0;
    check(zero == (rank == 0), rank, str_cat("shard_update with ", name, ": after fit, each rank's variables are its own"));
    strategy.communicator().barrier()->wait();
  }
  strategy.set_options(saved);
}

}  // namespace
}  // namespace gradflow

// A callback that ends this process after `steps` batches: a rank dying mid-fit.
class DieAfter : public gradflow::Callback {
 public:
  explicit DieAfter(int64_t steps) : steps_(steps) {}
  void on_train_batch_end(int64_t step, const gradflow::Logs&) override {
    if (step + 1 == steps_) {
      std::printf("rank dying after %lld steps\n", static_cast<long long>(steps_));
      std::fflush(stdout);
      std::_Exit(0);
    }
  }

 private:
  int64_t steps_;
};

int main() {
  using namespace gradflow;
  try {
    set_num_threads(1);
    auto strategy = strategies::DataParallelStrategy::from_environment({.timeout = std::chrono::seconds(120)});
    int replicas = strategy->num_replicas_in_sync();
    if (const char* dies = std::getenv("DP_RANK_DIES")) {
      Tensor x = random_uniform({4096, 8}, -1, 1, kF32, kCPU, 1), y = random_uniform({4096}, 0, 4, kF32, kCPU, 2).to(kI64);
      Sequential model = make_model();
      model.compile("adam", "sparse_categorical_crossentropy");
      // DP_SHARD_UPDATE=1: the same with the update split between the ranks (its own collectives).
      if (std::getenv("DP_SHARD_UPDATE")) strategy->set_options({.shard_update = true});
      auto scope = strategy->scope();
      std::vector<CallbackPtr> callbacks;
      if (std::atoi(dies) == strategy->replica_id()) callbacks.push_back(std::make_shared<DieAfter>(20));
      try {
        model.fit(x, y, {.epochs = 1000, .batch_size = 8, .callbacks = callbacks, .verbose = 0});
      } catch (const distributed::CollectiveError& e) {
        std::printf("rank %d: fit failed as it should: %s\n", strategy->replica_id(), e.what());
        return 4;
      }
      std::printf("rank %d: FAILED: fit finished although a rank died\n", strategy->replica_id());
      return 1;
    }
    fit_matches_single_replica(*strategy, 8 * replicas * 4, 8);      // equal shards
    fit_matches_single_replica(*strategy, 8 * replicas * 3 + 3, 8);  // a short last step, some replicas empty
    fit_matches_single_replica(*strategy, 8 * replicas - 3, 8);      // one step, short and uneven
    fit_matches_single_replica(*strategy, 8 * replicas * 2 * 3, 8, 2);   // accumulating 2 batches
    fit_matches_single_replica(*strategy, 8 * replicas * 2 * 2 + 5, 8, 2);  // ... and a short last group
    load_balancing_keeps_the_update(*strategy);
    split_update_matches_the_plain_one(*strategy);
    custom_loop_matches_single_replica(*strategy, Loop::kReduceGradients);
    custom_loop_matches_single_replica(*strategy, Loop::kStrategyGradient);
    unused_variables_are_handled(*strategy);
    buckets_start_during_backward(*strategy);
    compressed_last_bucket_runs_on_the_training_thread(*strategy);
    compressed_gradients_stay_identical(*strategy);
    run_reduce_and_divergence_check(*strategy);
    accumulation_with_batch_saves_on_uneven_data(*strategy);
    sync_batch_norm_matches_single_replica(*strategy, 8 * replicas * 4, 1);
    sync_batch_norm_matches_single_replica(*strategy, 8 * replicas * 3 + 3, 1);  // replicas without rows
    sync_batch_norm_matches_single_replica(*strategy, 8 * replicas * 4 + 5, 2);  // accumulating
    batch_norm_statistics_are_averaged(*strategy);
    std::printf("rank %d of %d (%s): %s\n", strategy->replica_id(), replicas,
                std::string(distributed::backend_name(strategy->communicator().backend())).c_str(),
                testing::failures() == 0 ? "all ok" : "FAILURES");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "data_parallel_rank: %s\n", e.what());
    return 1;
  }
  return testing::failures() == 0 ? 0 : 1;
}
