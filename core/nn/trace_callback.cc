#include "core/nn/trace_callback.h"

#include "core/nn/replica_context.h"
#include "core/tensor/error.h"
#include "core/trace/trace.h"

namespace gradflow {
namespace {

class TraceStepsCallback : public Callback {
 public:
  TraceStepsCallback(std::string path, int64_t first, int64_t last) : path_(std::move(path)), first_(first), last_(last) {}

  void on_train_batch_begin(int64_t step, const Logs&) override {
    if (done_ || tracing_ || step != first_) return;
    ReplicaContext* ctx = current_replica_context();
    trace::start(ctx ? str_cat("rank ", ctx->replica_id()) : std::string("gradflow"));
    tracing_ = true;
  }
  void on_train_batch_end(int64_t step, const Logs&) override {
    if (tracing_ && step + 1 >= last_) finish();
  }
  void on_train_end(const Logs&) override {
    if (tracing_) finish();  // fewer steps than asked for
  }

 private:
  void finish() {
    tracing_ = false;
    done_ = true;  // one window per fit
    std::string path = path_;
    ReplicaContext* ctx = current_replica_context();
    if (size_t at = path.find("{rank}"); at != std::string::npos) path.replace(at, 6, std::to_string(ctx ? ctx->replica_id() : 0));
    trace::stop_and_write(path);
  }

  std::string path_;
  int64_t first_, last_;
  bool tracing_ = false;
  bool done_ = false;
};

}  // namespace

CallbackPtr TraceSteps(std::string path, int64_t first_step, int64_t last_step) {
  if (first_step < 0 || last_step <= first_step) {
    throw ValueError(str_cat("TraceSteps: need 0 <= first_step < last_step, got ", first_step, " and ", last_step));
  }
  return std::make_shared<TraceStepsCallback>(std::move(path), first_step, last_step);
}

}  // namespace gradflow
