// Callbacks that make fit() fail the way a crashed job would, for the resume tests: they throw
// std::runtime_error("simulated crash") after the given batch or epoch (BackupAndRestore, listed before
// them, has saved by then).
#pragma once

#include <cstdint>
#include <stdexcept>

#include "core/nn/callbacks.h"

namespace gradflow::testing {

// After the `after`-th batch of the job (counted across epochs).
class CrashAfterBatch : public Callback {
 public:
  explicit CrashAfterBatch(int64_t after) : after_(after) {}
  void on_train_batch_end(int64_t, const Logs&) override {
    if (++seen_ == after_) throw std::runtime_error("simulated crash");
  }

 private:
  int64_t after_, seen_ = 0;
};

// After epoch `after` ended.
class CrashAfterEpoch : public Callback {
 public:
  explicit CrashAfterEpoch(int after) : after_(after) {}
  void on_epoch_end(int epoch, const Logs&) override {
    if (epoch == after_) throw std::runtime_error("simulated crash");
  }

 private:
  int after_;
};

}  // namespace gradflow::testing
