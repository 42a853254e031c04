// Timeline tracing: what each thread did when, written as Chrome trace-event JSON (open the file in
// ui.perfetto.dev or chrome://tracing), the format TensorFlow's profiler trace viewer also reads.
//
//   trace::start();
//   { trace::Span span("backward"); ... }              // one bar on this thread's lane
//   trace::stop_and_write("/tmp/step.trace.json");
//
// fit() marks the batch's fetch, forward, backward, metrics, gradient waits, the optimizer and the
// batch-end callbacks; the communicator marks each op on the thread that runs it (the progress thread
// for async ops), so a data-parallel step shows whether all-reduces overlap backward. When not started, a Span costs one relaxed atomic load.
#pragma once

#include <atomic>
#include <chrono>
#include <string>

namespace gradflow::trace {

namespace internal {
extern std::atomic<bool> g_enabled;
void record(std::string name, const char* category, std::chrono::steady_clock::time_point begin,
            std::chrono::steady_clock::time_point end, std::string detail);
}  // namespace internal

inline bool enabled() { return internal::g_enabled.load(std::memory_order_relaxed); }

// Starts collecting (forgetting earlier spans). `process` names this process's row (e.g. "rank 1").
void start(const std::string& process = "");
// Stops collecting and writes what was collected to path; gradflow::Error naming path when it cannot.
void stop_and_write(const std::string& path);
// Names this thread's lane (default "thread <n>"; start() names its caller "main" unless named).
void set_thread_name(const std::string& name);

// One bar from construction to destruction on the calling thread's lane. `detail` shows as an argument.
class Span {
 public:
  explicit Span(const char* name, const char* category = "compute", std::string detail = "")
      : name_(name), category_(category), detail_(std::move(detail)) {
    if (enabled()) begin_ = std::chrono::steady_clock::now(), active_ = true;
  }
  ~Span() {
    if (active_ && enabled()) internal::record(name_, category_, begin_, std::chrono::steady_clock::now(), std::move(detail_));
  }
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;

 private:
  const char* name_;
  const char* category_;
  std::string detail_;
  std::chrono::steady_clock::time_point begin_;
  bool active_ = false;
};

}  // namespace gradflow::trace
