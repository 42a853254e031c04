#include "examples/example_job.h"

#include <algorithm>
#include <fstream>
#include <thread>

#include "strategies/mirrored.h"

namespace gradflow::examples {

void add_common_flags(CLI::App& app, ExampleFlags& f) {
  app.add_option("--epochs", f.epochs, "passes over the training set")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", f.batch_size, "examples per step (per replica when distributed)")
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", f.seed, "seed for initial weights, dropout and shuffling");
  app.add_option("--threads", f.threads, "CPU threads (0: all)")->check(CLI::NonNegativeNumber);
  app.add_option("--data-dir", f.data_dir, "folder with the four Fashion-MNIST .gz files");
  app.add_option("--logdir", f.logdir, "write TensorBoard event files here");
  app.add_option("--metrics-json", f.metrics_json, "also write the final metrics to this JSON file");
  app.add_option("--verbose", f.verbose, "0 silent, 1 progress bar, 2 one line per epoch");
  app.add_option("--strategy", f.strategy,
                 "auto: data-parallel when started as several ranks; mirrored: --replicas replicas on threads of "
                 "this process; none")
      ->check(CLI::IsMember({"auto", "mirrored", "none"}));
  app.add_option("--replicas", f.replicas, "with --strategy mirrored: how many (default: this machine's cores)")
      ->check(CLI::PositiveNumber);
  app.add_option("--device", f.device, "cpu, cuda (this rank's GPU) or cuda:N");
  app.add_option("--checkpoint-dir", f.checkpoint_dir, "save every epoch here; resume from the latest when present");
  app.add_option("--save-freq", f.save_freq, "with --checkpoint-dir: \"epoch\" or every N batches");
}

FashionMnist load_fashion_mnist(const std::string& dir) {
  auto load = [&](const std::string& prefix) {
    Tensor images = read_idx(dir + "/" + prefix + "-images-idx3-ubyte.gz").to(kF32) / 255.0;
    Tensor labels = read_idx(dir + "/" + prefix + "-labels-idx1-ubyte.gz").to(kI64);
    return std::pair{images, labels};
  };
  auto [x_train, y_train] = load("train");
  auto [x_test, y_test] = load("t10k");
  return {x_train, y_train, x_test, y_test};
}

ExampleJob::ExampleJob(const ExampleFlags& flags, strategies::DataParallelOptions data_parallel) : flags_(flags) {
  if (flags.threads > 0) set_num_threads(flags.threads);
  set_seed(flags.seed);
  absl::StatusOr<cluster::JobInfo> job = cluster::resolve_job(cluster::current_environment());
  if (!job.ok()) throw ValueError(std::string(job.status().message()));
  job_ = *job;
  if (flags.strategy == "auto" && job_.world_size > 1) {
    strategy_ = strategies::DataParallelStrategy::from_environment({}, data_parallel);
  } else if (flags.strategy == "mirrored") {
    if (job_.world_size > 1) {
      throw ValueError(str_cat("--strategy mirrored trains in one process, but this job has ", job_.world_size,
                               " ranks: leave --strategy auto for data-parallel ranks"));
    }
    if (flags.device == "cpu") {
      int n = flags.replicas > 0 ? flags.replicas : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
      strategy_ = std::make_unique<strategies::MirroredStrategy>(n);
    } else {
      // A replica per GPU (the first --replicas of them, else every visible one), each with its copies.
      if (flags.device != "cuda") {
        throw ValueError(str_cat("--strategy mirrored --device ", flags.device, ": use --device cuda (every GPU, or the ",
                                 "first --replicas) or cpu"));
      }
      int n = flags.replicas > 0 ? flags.replicas : std::max(1, cuda_device_count());
      std::vector<Device> gpus;
      for (int g = 0; g < n; ++g) gpus.push_back(Device::cuda(g));
      strategy_ = std::make_unique<strategies::MirroredStrategy>(gpus);
    }
  } else {
    strategy_ = std::make_unique<strategies::DefaultStrategy>();
  }
  scope_ = strategy_->scope();
  if (flags.strategy != "mirrored") {  // MirroredStrategy's scope places the model on its first replica's device
    device_scope_.emplace(flags.device == "cuda" ? Device::cuda(std::max(job_.gpu, 0)) : Device::parse(flags.device));
  }
}

namespace {

// Notes when step `step` of a run that starts at epoch 0, step 0 begins (a resumed run is not timed).
class WarmupClock : public Callback {
 public:
  WarmupClock(std::shared_ptr<std::optional<std::chrono::steady_clock::time_point>> warm, int64_t step)
      : warm_(std::move(warm)), step_(step) {}
  void on_epoch_begin(int epoch, const Logs&) override {
    if (first_epoch_ < 0) first_epoch_ = epoch;
    epoch_ = epoch;
  }
  void on_train_batch_begin(int64_t batch, const Logs&) override {
    if (first_batch_ < 0) first_batch_ = batch;
    if (first_epoch_ == 0 && first_batch_ == 0 && epoch_ == 0 && batch == step_) *warm_ = std::chrono::steady_clock::now();
  }

 private:
  std::shared_ptr<std::optional<std::chrono::steady_clock::time_point>> warm_;
  int64_t step_;
  int epoch_ = -1, first_epoch_ = -1;
  int64_t first_batch_ = -1;
};

}  // namespace

std::vector<CallbackPtr> ExampleJob::callbacks(BackupAndRestoreOptions backup) const {
  std::vector<CallbackPtr> out;
  warm_->reset();
  out.push_back(std::make_shared<WarmupClock>(warm_, kWarmupSteps));
  if (!flags_.logdir.empty() && chief()) out.push_back(TensorBoard({.log_dir = flags_.logdir}));
  if (!flags_.checkpoint_dir.empty()) {
    backup.save_freq = flags_.save_freq;
    out.push_back(BackupAndRestore(flags_.checkpoint_dir, backup));
  }
  return out;
}

std::chrono::steady_clock::time_point ExampleJob::synchronized_now() {
  (void)strategy_->reduce(strategies::Reduction::kSum, zeros({}));
  synchronized_ = std::chrono::steady_clock::now();
  return synchronized_;
}

void ExampleJob::report(const Logs& test, double seconds_per_epoch, int64_t examples_per_epoch) const {
  if (!chief()) return;  // every replica has the same (global) result; the chief reports it
  std::printf("test_loss=%.4f test_accuracy=%.4f\n", test.at("loss"), test.at("accuracy"));
  if (flags_.metrics_json.empty()) return;
  std::ofstream out(flags_.metrics_json);
  out.precision(17);  // resume tests compare runs exactly
  out << "{\"test_loss\": " << test.at("loss") << ", \"test_accuracy\": " << test.at("accuracy")
      << ", \"seconds_per_epoch\": " << seconds_per_epoch << ", \"replicas\": " << strategy_->num_replicas_in_sync()
      << ", \"samples_per_second\": "
      << (seconds_per_epoch > 0 ? static_cast<double>(examples_per_epoch) / seconds_per_epoch : 0.0);  // resumed, done
  if (warm_->has_value() && synchronized_ > **warm_) {
    const int64_t global_batch = flags_.batch_size * strategy_->num_replicas_in_sync();
    const double samples = static_cast<double>(examples_per_epoch * flags_.epochs - kWarmupSteps * global_batch);
    out << ", \"steady_samples_per_second\": "
        << samples / std::chrono::duration<double>(synchronized_ - **warm_).count();
  }
  out << "}\n";
  if (!out) throw Error(str_cat(flags_.metrics_json, ": cannot write metrics"));
}

}  // namespace gradflow::examples
