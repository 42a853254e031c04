// The seed's model, as in the Keras MNIST example, on Fashion-MNIST:
// Flatten, Dense(128, relu), Dropout(0.2), Dense(10, softmax); Adam; sparse categorical cross-entropy.
//
//   build/bin/fashion_mnist --epochs 5
//   Epoch 1/5
//   1875/1875 [==============================] - 2s 1ms/step - loss: 0.5010 - accuracy: 0.8236
//   ...
//   test_loss=0.3400 test_accuracy=0.8780
//
// Started by gfrun, mpirun or srun with more than one rank, it trains data-parallel with no extra flag
// (MultiWorkerMirroredStrategy from the environment; --batch-size is per replica): the model code is the
// same. `--strategy none` trains each rank alone; `--strategy mirrored` trains --replicas replicas on
// threads of one process (MirroredStrategy; CPU only so far).
//
//   build/bin/gfrun -np 2 build/bin/fashion_mnist --threads 1
//
// --device cuda trains on the GPU (each rank on its own: cluster's JobInfo::gpu; cuda:N names one); the
// batches stay on the host and are copied step by step.
//
// --trace-file writes a timeline of a few steps (forward, backward, each all-reduce on the communication
// thread, optimizer) for ui.perfetto.dev.
//
// With --checkpoint-dir it saves every epoch (or every --save-freq batches) and resumes from the latest
// checkpoint there, so a job under `gfrun --max-restarts N` continues where it died, to the exact batch.
#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>
#include <omp.h>
#include <csignal>
#include <cstdlib>

#include "cluster/environment.h"
#include "core/gradflow.h"
#include "core/io/safetensors.h"
#include "strategies/data_parallel.h"
#include "strategies/mirrored.h"

using namespace gradflow;

// For the resume tests: the process dies (as kill -9 would do it) after an epoch's checkpoint is written.
class KillAfterEpoch : public Callback {
 public:
  explicit KillAfterEpoch(int epoch) : epoch_(epoch) {}
  void on_epoch_end(int epoch, const Logs&) override {
    if (epoch == epoch_) ::raise(SIGKILL);
  }

 private:
  int epoch_;
};

int main(int argc, char** argv) {
  CLI::App app{"Train the seed's Keras model on Fashion-MNIST"};
  int epochs = 5, threads = 0, verbose = 1, replicas = 0;
  int64_t batch_size = 32;
  uint64_t seed = 42;
  std::string data_dir = "/usr/share/datasets/fashion-mnist", logdir, metrics_json, strategy_name = "auto",
              device_name = "cpu", checkpoint_dir;
  int kill_after_epoch = -1;
  int64_t kill_in_save = -1;
  std::string save_freq = "epoch", save_weights;
  std::string trace_file, trace_steps = "100:103";
  bool no_overlap = false;
  bool balance_load = false;
  app.add_option("--epochs", epochs, "passes over the training set")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", batch_size, "examples per step")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "seed for initial weights, dropout and shuffling");
  app.add_option("--threads", threads, "CPU threads (0: all)")->check(CLI::NonNegativeNumber);
  app.add_option("--data-dir", data_dir, "folder with the four Fashion-MNIST .gz files");
  app.add_option("--logdir", logdir, "write TensorBoard event files here");
  app.add_option("--metrics-json", metrics_json, "also write the final metrics to this JSON file");
  app.add_option("--verbose", verbose, "0 silent, 1 progress bar, 2 one line per epoch");
  app.add_option("--strategy", strategy_name,
                 "auto: data-parallel when started as several ranks; mirrored: --replicas replicas on threads of "
                 "this process; none")
      ->check(CLI::IsMember({"auto", "mirrored", "none"}));
  app.add_option("--replicas", replicas, "with --strategy mirrored: how many (default: this machine's cores)")
      ->check(CLI::PositiveNumber);
  app.add_option("--device", device_name, "cpu, cuda (this rank's GPU) or cuda:N");
  app.add_option("--checkpoint-dir", checkpoint_dir, "save every epoch here; resume from the latest when present");
  app.add_option("--save-freq", save_freq, "with --checkpoint-dir: \"epoch\" or every N batches");
  app.add_option("--kill-after-epoch", kill_after_epoch,
                 "testing: rank 0 kills itself (SIGKILL) after this epoch on a job's first try");
  app.add_option("--kill-in-save", kill_in_save,
                 "testing: rank 0 kills itself (SIGKILL) inside the save of checkpoint N (numbered by batches), "
                 "between writing its files and the commit, on a job's first try");
  app.add_option("--save-weights", save_weights, "write the final weights here (safetensors; the chief)");
  app.add_option("--trace-file", trace_file,
                 "write a timeline of some steps here (Chrome trace JSON; {rank} becomes the rank)");
  app.add_option("--trace-steps", trace_steps, "the steps --trace-file records, FIRST:LAST (LAST excluded)");
  app.add_flag("--no-overlap", no_overlap, "data-parallel: all-reduce gradients after backward, not during it");
  app.add_flag("--balance-load", balance_load,
               "data-parallel: split each global batch among the ranks by their measured speed (not bitwise repeatable)");
  CLI11_PARSE(app, argc, argv);

  try {
    if (threads > 0) set_num_threads(threads);
    set_seed(seed);
    auto load = [&](const std::string& prefix) {
      Tensor images = read_idx(data_dir + "/" + prefix + "-images-idx3-ubyte.gz").to(kF32) / 255.0;
      Tensor labels = read_idx(data_dir + "/" + prefix + "-labels-idx1-ubyte.gz").to(kI64);
      return std::pair{images, labels};
    };
    auto [x_train, y_train] = load("train");
    auto [x_test, y_test] = load("t10k");

    std::unique_ptr<strategies::Strategy> strategy = std::make_unique<strategies::DefaultStrategy>();
    absl::StatusOr<cluster::JobInfo> job = cluster::resolve_job(cluster::current_environment());
    if (!job.ok()) throw ValueError(std::string(job.status().message()));
    if (strategy_name == "auto" && job->world_size > 1) {
      strategy = strategies::DataParallelStrategy::from_environment({}, {.overlap = !no_overlap, .balance_load = balance_load});
    }
    if (strategy_name == "mirrored") {
      if (job->world_size > 1) {
        throw ValueError(str_cat("--strategy mirrored trains in one process, but this job has ", job->world_size,
                                 " ranks: leave --strategy auto for data-parallel ranks"));
      }
      if (device_name != "cpu") {
        throw ValueError(str_cat("--strategy mirrored with --device ", device_name,
                                 ": MirroredStrategy over GPUs is not built yet (its replicas are CPU threads)"));
      }
      int n = replicas > 0 ? replicas : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
      strategy = std::make_unique<strategies::MirroredStrategy>(n);
    }
    auto scope = strategy->scope();
    bool chief = strategy->replica_id() == 0;
    Device device = device_name == "cuda" ? Device::cuda(std::max(job->gpu, 0)) : Device::parse(device_name);
    DeviceScope on_device(device);

    Sequential model({
        Flatten(Shape{28, 28}),
        Dense(128, {.activation = "relu"}),
        Dropout(0.2),
        Dense(10, {.activation = "softmax"}),
    });
    model.compile(std::make_shared<optimizers::Adam>(), "sparse_categorical_crossentropy", {"accuracy"});
    std::vector<CallbackPtr> callbacks;
    if (!logdir.empty() && chief) callbacks.push_back(TensorBoard({.log_dir = logdir}));
    const char* restart = std::getenv("GRADFLOW_RESTART_COUNT");
    const bool first_try = !restart || std::string(restart) == "0";
    if (!checkpoint_dir.empty()) {
      BackupAndRestoreOptions backup{.save_freq = save_freq};
      if (kill_in_save >= 0 && chief && first_try) {
        backup.before_commit = [kill_in_save](int64_t step) {
          if (step == kill_in_save) ::raise(SIGKILL);
        };
      }
      callbacks.push_back(BackupAndRestore(checkpoint_dir, backup));
    }
    if (!trace_file.empty()) {
      size_t colon = trace_steps.find(':');
      if (colon == std::string::npos) throw ValueError(str_cat("--trace-steps: expected FIRST:LAST, got \"", trace_steps, "\""));
      callbacks.push_back(TraceSteps(trace_file, std::stoll(trace_steps.substr(0, colon)), std::stoll(trace_steps.substr(colon + 1))));
    }
    if (kill_after_epoch >= 0 && chief && first_try) {
      callbacks.push_back(std::make_shared<KillAfterEpoch>(kill_after_epoch));
    }
    auto start = std::chrono::steady_clock::now();
    model.fit(x_train, y_train, {.epochs = epochs, .batch_size = batch_size, .callbacks = callbacks, .verbose = verbose});
    double seconds_per_epoch = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / epochs;
    Logs result = model.evaluate(x_test, y_test);

    if (!chief) return 0;  // every replica has the same (global) result; the chief reports it
    if (!save_weights.empty()) {
      std::vector<std::pair<std::string, Tensor>> named;
      for (const Variable& v : model.variables()) named.emplace_back(v.name(), v.value_unwatched());
      absl::Status written = write_safetensors(save_weights, named);
      if (!written.ok()) throw Error(std::string(written.message()));
    }
    std::printf("test_loss=%.4f test_accuracy=%.4f\n", result["loss"], result["accuracy"]);
    if (!metrics_json.empty()) {
      std::ofstream out(metrics_json);
      out.precision(17);  // resume tests compare runs exactly
      out << "{\"test_loss\": " << result["loss"] << ", \"test_accuracy\": " << result["accuracy"]
          << ", \"seconds_per_epoch\": " << seconds_per_epoch << ", \"replicas\": " << strategy->num_replicas_in_sync()
          << ", \"samples_per_second\": " << x_train.dim(0) / seconds_per_epoch << "}\n";
      if (!out) throw Error(str_cat(metrics_json, ": cannot write metrics"));
    }
  } catch (const std::exception& e) {
    std::cerr << "fashion_mnist: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
