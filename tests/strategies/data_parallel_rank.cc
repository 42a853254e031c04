// One rank of the data-parallel equivalence test, started by mpirun (MPI) or gfrun (Gloo): N replicas with
// per-replica batch B must end with the same weights as one replica with batch N*B after the same steps
// (no dropout, SGD; 1e-5 relative), with fit() and with a custom GradientTape loop, including uneven last
// batches where some replicas get no rows; evaluate() must report the single-replica values on every rank.
// Prints "rank R: ... ok" lines; exits 0 when everything matched, 1 otherwise.
// With DP_RANK_DIES=R, rank R instead exits in the middle of a long fit, with status 0 so that the
// launcher does not step in: the others must fail by themselves with the communicator's error (exit 4)
// rather than hang.
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "strategies/data_parallel.h"

namespace gradflow {
namespace {

int g_failures = 0;

void check(bool ok, int rank, const std::string& what) {
  std::printf("rank %d: %s %s\n", rank, what.c_str(), ok ? "ok" : "FAILED");
  g_failures += !ok;
}

Sequential make_model() {
  return Sequential({Dense(16, {.activation = "relu"}), Dense(4, {.activation = "softmax"})});
}

double max_relative_difference(const std::vector<Variable>& a, const std::vector<Variable>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    std::vector<double> x = a[i].value_unwatched().to(kF64).reshape({-1}).to_vector<double>();
    std::vector<double> y = b[i].value_unwatched().to(kF64).reshape({-1}).to_vector<double>();
    for (size_t k = 0; k < x.size(); ++k) worst = std::max(worst, std::abs(x[k] - y[k]) / std::max(1e-3, std::abs(y[k])));
  }
  return worst;
}

// n examples, per-replica batch b: fit under the strategy vs. one replica with batch b * replicas.
void fit_matches_single_replica(strategies::Strategy& strategy, int64_t n, int64_t b) {
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
    distributed.fit(x, y, {.epochs = 2, .batch_size = b, .shuffle = false, .verbose = 0});
    dist_eval = distributed.evaluate(x, y, {.batch_size = 7});
  }
  set_seed(7);
  Sequential single = make_model();
  single.compile(std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 0.5}),
                 "sparse_categorical_crossentropy", {"accuracy"});
  single.fit(x, y, {.epochs = 2, .batch_size = b * replicas, .shuffle = false, .verbose = 0});
  Logs single_eval = single.evaluate(x, y, {.batch_size = 7});
  double diff = max_relative_difference(distributed.variables(), single.variables());
  check(diff < 1e-5, rank, str_cat("fit n=", n, " b=", b, ": max relative weight difference ", diff));
  check(std::abs(dist_eval["loss"] - single_eval["loss"]) < 1e-5 &&
            std::abs(dist_eval["accuracy"] - single_eval["accuracy"]) < 1e-9,
        rank, str_cat("evaluate n=", n, ": loss ", dist_eval["loss"], " vs ", single_eval["loss"], ", accuracy ",
                      dist_eval["accuracy"], " vs ", single_eval["accuracy"]));
}

// The custom-loop form: each replica's gradients on its rows, reduce_gradients, apply.
void custom_loop_matches_single_replica(strategies::Strategy& strategy) {
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
      std::vector<Tensor> grads = tape.gradient(loss, std::vector<GradSource>(vars.begin(), vars.end()));
      if (distributed) grads = strategy.reduce_gradients(grads);
      sgd.apply_gradients(grads, vars);
    }
    return model;
  };
  Sequential distributed = run(true), single = run(false);
  double diff = max_relative_difference(distributed.variables(), single.variables());
  check(diff < 1e-5, rank, str_cat("custom loop: max relative weight difference ", diff));
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
      model.compile("sgd", "sparse_categorical_crossentropy");
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
    custom_loop_matches_single_replica(*strategy);
    std::printf("rank %d of %d (%s): %s\n", strategy->replica_id(), replicas,
                std::string(distributed::backend_name(strategy->communicator().backend())).c_str(),
                g_failures == 0 ? "all ok" : "FAILURES");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "data_parallel_rank: %s\n", e.what());
    return 1;
  }
  return g_failures == 0 ? 0 : 1;
}
