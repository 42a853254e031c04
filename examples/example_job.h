// What every Keras-style example shares (DESIGN.md's example contract), so each program keeps only its
// model: the common flags, Fashion-MNIST, the strategy the launch implies (data-parallel under gfrun,
// mpirun, srun or TF_CONFIG with several ranks; --strategy mirrored for replicas on threads), the
// model's device, the callbacks for --logdir and --checkpoint-dir, and the final
// `test_loss=... test_accuracy=...` line with --metrics-json.
//
//   examples::ExampleFlags flags{.epochs = 2};
//   CLI::App app{"..."};
//   examples::add_common_flags(app, flags);
//   CLI11_PARSE(app, argc, argv);
//   examples::ExampleJob job(flags);                 // strategy scope and DeviceScope open from here
//   Sequential model(...); model.compile(...);
//   model.fit(x, y, {.callbacks = job.callbacks()});
//   job.report(model.evaluate(x_test, y_test), seconds_per_epoch, examples_per_epoch);
#pragma once

#include <chrono>
#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cluster/environment.h"
#include "core/gradflow.h"
#include "strategies/data_parallel.h"

namespace gradflow::examples {

struct ExampleFlags {
  int epochs = 5;
  int64_t batch_size = 32;
  uint64_t seed = 42;
  int threads = 0;
  int verbose = 1;
  int replicas = 0;
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string logdir, metrics_json, checkpoint_dir;
  std::string save_freq = "epoch";
  std::string strategy = "auto";
  std::string device = "cpu";
};

// --epochs --batch-size --seed --threads --data-dir --logdir --metrics-json --verbose --strategy
// --replicas --device --checkpoint-dir --save-freq, with the defaults in `flags`.
void add_common_flags(CLI::App& app, ExampleFlags& flags);

struct FashionMnist {
  Tensor x_train, y_train, x_test, y_test;  // images f32 in [0, 1] shaped [n, 28, 28], labels i64
};
// Reads the four IDX files of `dir`; Error naming the file when one is missing or damaged.
FashionMnist load_fashion_mnist(const std::string& dir);

// The job as the flags and the launch define it. Applies --threads and --seed, resolves the job from
// the environment (cluster/), picks the strategy, and holds its scope and the model's DeviceScope for
// its lifetime: make the model after constructing it.
class ExampleJob {
 public:
  explicit ExampleJob(const ExampleFlags& flags, strategies::DataParallelOptions data_parallel = {});

  strategies::Strategy& strategy() { return *strategy_; }
  const cluster::JobInfo& job() const { return job_; }
  bool chief() const { return strategy_->replica_id() == 0; }
  // TensorBoard (--logdir, the chief) and BackupAndRestore (--checkpoint-dir, every replica: its saves
  // are collective), to which a program adds its own.
  std::vector<CallbackPtr> callbacks(BackupAndRestoreOptions backup = {}) const;
  // The time once every replica has reached this call (a sum across processes, as a barrier): where an
  // epoch's clock starts and stops, so that a rank that finished loading its data first does not count
  // its wait for the others as training (PyTorch's DDP benchmark barriers the same way). The last call
  // also ends the steady-state clock (report()).
  std::chrono::steady_clock::time_point synchronized_now();
  // The chief prints the final line and writes --metrics-json (with the time per epoch, the replicas
  // and the examples per second); other replicas print nothing. steady_samples_per_second leaves out the
  // first kWarmupSteps steps of the run (oneDNN compiles its kernels on first use: tens of ms), counted
  // from the callbacks() clock to the last synchronized_now(); absent for a resumed run.
  static constexpr int64_t kWarmupSteps = 5;
  void report(const Logs& test, double seconds_per_epoch, int64_t examples_per_epoch) const;

 private:
  ExampleFlags flags_;
  cluster::JobInfo job_;
  std::unique_ptr<strategies::Strategy> strategy_;
  std::unique_ptr<ReplicaContextScope> scope_;
  std::optional<DeviceScope> device_scope_;
  // When step kWarmupSteps of the run's first epoch began (set by a callback of callbacks()), and the last
  // synchronized_now().
  std::shared_ptr<std::optional<std::chrono::steady_clock::time_point>> warm_ =
      std::make_shared<std::optional<std::chrono::steady_clock::time_point>>();
  std::chrono::steady_clock::time_point synchronized_;
};

}  // namespace gradflow::examples
