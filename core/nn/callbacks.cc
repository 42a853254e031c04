#include "core/nn/callbacks.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <sstream>

#include "core/autodiff/tape.h"
#include "core/nn/model.h"
#include "core/nn/training.h"

namespace gradflow {

std::string format_logs(const Logs& logs) {
  std::string out;
  char buf[64];
  // Keras shows the loss first, then the rest in the order they were added (here: sorted, val_ last).
  std::vector<std::string> keys;
  if (logs.count("loss")) keys.push_back("loss");
  for (const auto& [k, v] : logs) {
    if (k != "loss" && k.rfind("val_", 0) != 0) keys.push_back(k);
  }
  if (logs.count("val_loss")) keys.push_back("val_loss");
  for (const auto& [k, v] : logs) {
    if (k != "val_loss" && k.rfind("val_", 0) == 0) keys.push_back(k);
  }
  for (const std::string& k : keys) {
    double v = logs.at(k);
    std::snprintf(buf, sizeof buf, std::abs(v) > 1e-3 || v == 0 ? "%.4f" : "%.4e", v);
    out += " - " + k + ": " + buf;
  }
  return out;
}

std::string format_eta(double seconds) {
  char buf[32];
  int s = static_cast<int>(seconds);
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%d:%02d:%02d", s / 3600, (s % 3600) / 60, s % 60);
  } else if (s >= 60) {
    std::snprintf(buf, sizeof buf, "%d:%02d", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ds", s);
  }
  return buf;
}

std::string format_elapsed(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0fs", seconds);
  return buf;
}

namespace {

using Clock = std::chrono::steady_clock;

std::string format_per_step(double seconds) {
  char buf[32];
  if (seconds >= 1) {
    std::snprintf(buf, sizeof buf, "%.0fs/step", seconds);
  } else if (seconds >= 1e-3) {
    std::snprintf(buf, sizeof buf, "%.0fms/step", seconds * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.0fus/step", seconds * 1e6);
  }
  return buf;
}

class Progbar : public Callback {
 public:
  Progbar(int verbose, std::ostream* out, std::optional<bool> interactive)
      : verbose_(verbose), out_(out ? out : &std::cout), interactive_(interactive.value_or(isatty(STDOUT_FILENO))) {}

  void on_epoch_begin(int epoch, const Logs&) override {
    if (verbose_ == 0) return;
    *out_ << "Epoch " << epoch + 1 << "/" << epochs_ << "\n" << std::flush;
    start_ = Clock::now();
    last_width_ = 0;
  }
  void on_train_batch_end(int64_t batch, const Logs& logs) override {
    seen_ = batch + 1;
    if (verbose_ != 1 || !interactive_) return;
    double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    // Redraw at most every 50 ms: printing every step of a fast model costs more than the step.
    if ((steps_ <= 0 || batch + 1 < steps_) && elapsed - last_draw_ < 0.05) return;
    last_draw_ = elapsed;
    int64_t done = batch + 1;
    std::string line = bar(done);
    if (steps_ > 0 && done < steps_) {
      line += " - ETA: " + format_eta(elapsed / done * (steps_ - done));
    } else {
      line += " - " + format_elapsed(elapsed) + " " + format_per_step(elapsed / done);
    }
    line += format_logs(logs);
    size_t width = line.size();
    if (width < last_width_) line += std::string(last_width_ - width, ' ');
    last_width_ = width;
    *out_ << "\r" << line << std::flush;
  }
  void on_epoch_end(int epoch, const Logs& logs) override {
    if (verbose_ == 0) return;
    double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    std::string per_step = format_per_step(elapsed / std::max<int64_t>(steps_ > 0 ? steps_ : seen_, 1));
    std::string line;
    if (verbose_ == 1) {
      line = bar(steps_ > 0 ? steps_ : seen_) + " - " + format_elapsed(elapsed) + " " + per_step + format_logs(logs);
    } else {  // Keras' verbose=2 line
      std::string count = std::to_string(steps_ > 0 ? steps_ : seen_);
      line = count + "/" + count + " - " + format_elapsed(elapsed) + format_logs(logs) + " - " +
             format_elapsed(elapsed) + "/epoch - " + per_step;
    }
    if (verbose_ == 1 && interactive_) {
      size_t width = line.size();
      if (width < last_width_) line += std::string(last_width_ - width, ' ');
      *out_ << "\r" << line << "\n" << std::flush;
    } else {
      *out_ << line << "\n" << std::flush;
    }
  }

 private:
  std::string bar(int64_t done) const {
    constexpr int kWidth = 30;
    if (steps_ <= 0) return std::to_string(done) + "/Unknown";
    int digits = static_cast<int>(std::to_string(steps_).size());
    std::string count = std::to_string(done);
    std::string out = std::string(digits - count.size(), ' ') + count + "/" + std::to_string(steps_) + " [";
    int filled = steps_ > 0 ? static_cast<int>(kWidth * done / steps_) : kWidth;
    if (filled > 0) out += std::string(filled - 1, '=') + (done < steps_ ? ">" : "=");
    return out + std::string(kWidth - filled, '.') + "]";
  }

  int verbose_;
  std::ostream* out_;
  bool interactive_;
  Clock::time_point start_;
  double last_draw_ = -1;
  size_t last_width_ = 0;
  int64_t seen_ = 0;  // steps of this epoch so far (the total when the data's length is unknown)
};

class EarlyStoppingCallback : public Callback {
 public:
  explicit EarlyStoppingCallback(EarlyStoppingOptions o) : o_(std::move(o)) {
    bool maximize = o_.mode == "max" || (o_.mode == "auto" && (o_.monitor.find("acc") != std::string::npos ||
                                                               o_.monitor.find("auc") != std::string::npos));
    if (o_.mode != "min" && o_.mode != "max" && o_.mode != "auto") {
      throw ValueError(str_cat("EarlyStopping: mode must be min, max or auto, got ", o_.mode));
    }
    sign_ = maximize ? 1 : -1;
  }
  void on_train_begin(const Logs&) override {
    wait_ = 0;
    best_ = o_.baseline.value_or(-sign_ * std::numeric_limits<double>::infinity());
    best_weights_.clear();
  }
  void on_epoch_end(int epoch, const Logs& logs) override {
    auto it = logs.find(o_.monitor);
    if (it == logs.end()) {
      throw ValueError(str_cat("EarlyStopping: metric '", o_.monitor, "' is not in the logs (", format_logs(logs), ")"));
    }
    double current = it->second;
    ++wait_;  // Keras counts first, then resets on improvement
    if (sign_ * (current - best_) > o_.min_delta || (!o_.baseline && std::isinf(best_))) {
      best_ = current;
      wait_ = 0;
      if (o_.restore_best_weights) snapshot();
      return;
    }
    if (wait_ >= o_.patience && epoch > 0) {
      model_->training->stop_training = true;
      stopped_epoch_ = epoch;
    }
  }
  void on_train_end(const Logs&) override {
    if (o_.restore_best_weights && !best_weights_.empty() && stopped_epoch_ >= 0) {
      std::vector<Variable> vars = model_->variables();
      for (size_t i = 0; i < vars.size(); ++i) vars[i].assign(best_weights_[i]);
    }
  }

 private:
  void snapshot() {
    best_weights_.clear();
    for (const Variable& v : model_->variables()) {
      best_weights_.push_back(v.value_unwatched().clone());
    }
  }

  EarlyStoppingOptions o_;
  double sign_;
  double best_ = 0;
  int wait_ = 0;
  int stopped_epoch_ = -1;
  std::vector<Tensor> best_weights_;
};

class LearningRateSchedulerCallback : public Callback {
 public:
  explicit LearningRateSchedulerCallback(std::function<double(int, double)> schedule) : schedule_(std::move(schedule)) {}
  void on_epoch_begin(int epoch, const Logs&) override {
    TrainingConfig& t = *model_->training;
    set_learning_rate(t, schedule_(epoch, current_learning_rate(t)));
  }
  void on_epoch_end(int, const Logs&) override {}

 private:
  std::function<double(int, double)> schedule_;
};

class CSVLoggerCallback : public Callback {
 public:
  CSVLoggerCallback(std::string filename, char sep, bool append) : filename_(std::move(filename)), sep_(sep), append_(append) {}
  void on_train_begin(const Logs&) override {
    bool had_header = append_ && std::ifstream(filename_).peek() != std::ifstream::traits_type::eof();
    out_.open(filename_, append_ ? std::ios::app : std::ios::trunc);
    if (!out_) throw Error(str_cat("CSVLogger: cannot open ", filename_));
    header_written_ = had_header;
  }
  void on_epoch_end(int epoch, const Logs& logs) override {
    if (!header_written_) {
      out_ << "epoch";
      for (const auto& [k, v] : logs) out_ << sep_ << k;
      out_ << "\n";
      header_written_ = true;
    }
    out_ << epoch;
    for (const auto& [k, v] : logs) out_ << sep_ << v;
    out_ << "\n" << std::flush;
  }
  void on_train_end(const Logs&) override { out_.close(); }

 private:
  std::string filename_;
  char sep_;
  bool append_;
  bool header_written_ = false;
  std::ofstream out_;
};

}  // namespace

CallbackPtr ProgbarLogger(int verbose, std::ostream* out, std::optional<bool> interactive) {
  return std::make_shared<Progbar>(verbose, out, interactive);
}
CallbackPtr EarlyStopping(EarlyStoppingOptions options) {
  return std::make_shared<EarlyStoppingCallback>(std::move(options));
}
CallbackPtr LearningRateScheduler(std::function<double(int, double)> schedule) {
  return std::make_shared<LearningRateSchedulerCallback>(std::move(schedule));
}
CallbackPtr CSVLogger(std::string filename, char separator, bool append) {
  return std::make_shared<CSVLoggerCallback>(std::move(filename), separator, append);
}

}  // namespace gradflow
