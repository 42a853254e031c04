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
// threads of one process (MirroredStrategy; with --device cuda a replica per GPU).
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
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <omp.h>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <tuple>

#include "core/gradflow.h"
#include "core/io/safetensors.h"
#include "examples/example_job.h"

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

// For benchmarks: two single-rank runs that wait for each other before every step, as a synchronous
// job's ranks do, but exchange nothing else. Their samples per second are the ceiling of synchronous
// training on these cores: two free-running single runs also gain from one core being faster than the
// other, which a job in lockstep cannot (docs/benchmarks.md, "lockstep"). Each process counts its steps
// in its own cache line of a small shared file and waits for the other's count. With every_step false
// they wait for each other only before their first step (--start-together): two free runs whose steps
// start at the same time, so that they run side by side for as long as the faster one lasts.
class Lockstep : public Callback {
 public:
  // name: a file in /dev/shm that only this pair uses; index: 0 or 1.
  Lockstep(const std::string& name, int index, bool every_step)
      : index_(index), every_step_(every_step), path_("/dev/shm/" + name) {
    int fd = ::open(path_.c_str(), O_RDWR | O_CREAT, 0600);
    if (fd < 0 || ::ftruncate(fd, 2 * kLine) != 0) throw Error(str_cat("--lockstep: cannot open ", path_));
    void* p = ::mmap(nullptr, 2 * kLine, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) throw Error(str_cat("--lockstep: cannot map ", path_));
    lines_ = static_cast<char*>(p);
  }
  ~Lockstep() override {
    ::munmap(lines_, 2 * kLine);
    ::unlink(path_.c_str());
  }
  void on_train_batch_begin(int64_t, const Logs&) override {
    if (!every_step_ && steps_ > 0) return;
    counter(index_).store(++steps_, std::memory_order_release);
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    for (int spins = 0; counter(1 - index_).load(std::memory_order_acquire) < steps_; ++spins) {
      if (spins < 2048) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        continue;
      }
      sched_yield();
      // The other run died or was never started: end this one rather than wait for ever.
      if (spins % 4096 == 0 && std::chrono::steady_clock::now() > deadline) {
        throw Error(str_cat("--lockstep/--start-together: run ", 1 - index_, " of the pair ", path_,
                            " did not reach step ", steps_, " within ", kPatience.count(), " s"));
      }
    }
  }

 private:
  static constexpr size_t kLine = 64;
  static constexpr std::chrono::seconds kPatience{60};  // the other's data load included
  std::atomic<uint64_t>& counter(int i) { return *reinterpret_cast<std::atomic<uint64_t>*>(lines_ + i * kLine); }
  int index_;
  bool every_step_;
  std::string path_;
  char* lines_ = nullptr;
  uint64_t steps_ = 0;
};

// For benchmarks: when each training step ended, on this host's steady clock (CLOCK_MONOTONIC, which
// every process on the host shares), so that runs side by side can be measured over the time they
// really ran together (bench/data_parallel_scaling.sh). One line per step: epoch, step, the step's global
// rows, microseconds; written when training ends.
class StepTimes : public Callback {
 public:
  StepTimes(std::string path, int64_t examples, int64_t global_batch)
      : path_(std::move(path)), examples_(examples), global_batch_(global_batch) {}
  void on_epoch_begin(int epoch, const Logs&) override { epoch_ = epoch; }
  void on_train_batch_end(int64_t step, const Logs&) override {
    const auto now = std::chrono::steady_clock::now().time_since_epoch();
    lines_.push_back({epoch_, step, std::chrono::duration_cast<std::chrono::microseconds>(now).count()});
  }
  void on_train_end(const Logs&) override {
    std::ofstream out(path_);
    for (const auto& [epoch, step, micros] : lines_) {
      const int64_t rows = std::min(global_batch_, examples_ - step * global_batch_);
      out << epoch << " " << step << " " << rows << " " << micros << "\n";
    }
    out.close();
    if (!out) throw Error(str_cat("--step-times: cannot write ", path_));
  }

 private:
  struct Line {
    int epoch;
    int64_t step, micros;
  };
  std::string path_;
  int64_t examples_, global_batch_;
  int epoch_ = 0;
  std::vector<Line> lines_;
};

int main(int argc, char** argv) {
  CLI::App app{"Train the seed's Keras model on Fashion-MNIST"};
  examples::ExampleFlags flags;
  examples::add_common_flags(app, flags);
  int kill_after_epoch = -1;
  int64_t kill_in_save = -1;
  std::string save_weights, trace_file, trace_steps = "100:103";
  bool no_overlap = false;
  bool balance_load = false;
  bool shard_update = false;
  std::string lockstep, start_together, step_times;
  std::string compression = "none";
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
  app.add_flag("--shard-update", shard_update,
               "data-parallel: the ranks of a host share one copy of the variables and optimizer state, each "
               "updating its part (DataParallelOptions::shard_update)");
  app.add_option("--lockstep", lockstep,
                 "benchmarking, with --strategy none: NAME:INDEX, two single runs (INDEX 0 and 1, the same NAME, "
                 "unique to the pair) that wait for each other before every step (an error after 60 s without the other)");
  app.add_option("--start-together", start_together,
                 "benchmarking, with --strategy none: NAME:INDEX as for --lockstep, but the two runs wait for each "
                 "other only before their first step");
  app.add_option("--step-times", step_times,
                 "benchmarking: write when each step ended here (epoch, step, global rows, microseconds on the host's "
                 "steady clock; one line per step)");
  app.add_option("--compression", compression, "data-parallel: send gradients as bf16 or f16 (DataParallelOptions::compression)")
      ->check(CLI::IsMember({"none", "bf16", "f16"}));
  CLI11_PARSE(app, argc, argv);

  try {
    examples::FashionMnist data = examples::load_fashion_mnist(flags.data_dir);
    const strategies::GradientCompression wire = compression == "bf16" ? strategies::GradientCompression::kBFloat16
                                                 : compression == "f16" ? strategies::GradientCompression::kFloat16
                                                                        : strategies::GradientCompression::kNone;
    examples::ExampleJob job(flags, {.overlap = !no_overlap, .compression = wire, .balance_load = balance_load,
                                    .shard_update = shard_update});
    const bool chief = job.chief();

    Sequential model({
        Flatten(Shape{28, 28}),
        Dense(128, {.activation = "relu"}),
        Dropout(0.2),
        Dense(10, {.activation = "softmax"}),
    });
    model.compile(std::make_shared<optimizers::Adam>(), "sparse_categorical_crossentropy", {"accuracy"});
    const char* restart = std::getenv("GRADFLOW_RESTART_COUNT");
    const bool first_try = !restart || std::string(restart) == "0";
    BackupAndRestoreOptions backup;
    if (kill_in_save >= 0 && chief && first_try) {
      backup.before_commit = [kill_in_save](int64_t step) {
        if (step == kill_in_save) ::raise(SIGKILL);
      };
    }
    std::vector<CallbackPtr> callbacks = job.callbacks(backup);
    if (!trace_file.empty()) {
      size_t colon = trace_steps.find(':');
      if (colon == std::string::npos) throw ValueError(str_cat("--trace-steps: expected FIRST:LAST, got \"", trace_steps, "\""));
      callbacks.push_back(TraceSteps(trace_file, std::stoll(trace_steps.substr(0, colon)), std::stoll(trace_steps.substr(colon + 1))));
    }
    for (const auto& [flag, pair, every_step] : {std::tuple{"--lockstep", lockstep, true},
                                                  std::tuple{"--start-together", start_together, false}}) {
      if (pair.empty()) continue;
      size_t colon = pair.rfind(':');
      if (colon == std::string::npos || (pair.substr(colon + 1) != "0" && pair.substr(colon + 1) != "1")) {
        throw ValueError(str_cat(flag, ": expected NAME:0 or NAME:1, got \"", pair, "\""));
      }
      callbacks.push_back(std::make_shared<Lockstep>(pair.substr(0, colon), std::stoi(pair.substr(colon + 1)), every_step));
    }
    if (!step_times.empty()) {
      callbacks.push_back(std::make_shared<StepTimes>(step_times, data.x_train.dim(0),
                                                      flags.batch_size * job.strategy().num_replicas_in_sync()));
    }
    if (kill_after_epoch >= 0 && chief && first_try) {
      callbacks.push_back(std::make_shared<KillAfterEpoch>(kill_after_epoch));
    }
    auto start = job.synchronized_now();
    model.fit(data.x_train, data.y_train,
              {.epochs = flags.epochs, .batch_size = flags.batch_size, .callbacks = callbacks, .verbose = flags.verbose});
    double seconds_per_epoch = std::chrono::duration<double>(job.synchronized_now() - start).count() / flags.epochs;
    Logs result = model.evaluate(data.x_test, data.y_test);

    if (chief && !save_weights.empty()) {
      std::vector<std::pair<std::string, Tensor>> named;
      for (const Variable& v : model.variables()) named.emplace_back(v.name(), v.value_unwatched());
      absl::Status written = write_safetensors(save_weights, named);
      if (!written.ok()) throw Error(std::string(written.message()));
    }
    job.report(result, seconds_per_epoch, data.x_train.dim(0));
  } catch (const std::exception& e) {
    std::cerr << "fashion_mnist: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
