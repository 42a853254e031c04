#include "core/trace/trace.h"

#include <fstream>
#include <mutex>
#include <unistd.h>
#include <vector>

#include "core/tensor/error.h"
#include "nlohmann/json.hpp"

namespace gradflow::trace {
namespace internal {
std::atomic<bool> g_enabled{false};
}  // namespace internal

namespace {

using Clock = std::chrono::steady_clock;

struct Event {
  std::string name;
  const char* category;
  int thread;
  Clock::time_point begin, end;
  std::string detail;
};

struct Recorder {
  std::mutex mu;
  std::vector<Event> events;
  std::vector<std::string> thread_names;  // by lane number
  std::string process;
  Clock::time_point origin;
};

Recorder& recorder() {
  static Recorder* r = new Recorder();  // never destroyed: threads may record during exit
  return *r;
}

// This thread's lane number (assigned on first use); lock held.
int lane(Recorder& r, const std::string* name = nullptr) {
  thread_local int mine = -1;
  if (mine < 0) {
    mine = static_cast<int>(r.thread_names.size());
    r.thread_names.push_back(str_cat("thread ", mine));
  }
  if (name != nullptr) r.thread_names[mine] = *name;
  return mine;
}

}  // namespace

void internal::record(std::string name, const char* category, Clock::time_point begin, Clock::time_point end,
                      std::string detail) {
  Recorder& r = recorder();
  std::lock_guard<std::mutex> lock(r.mu);
  if (!enabled()) return;
  r.events.push_back({std::move(name), category, lane(r), begin, end, std::move(detail)});
}

void start(const std::string& process) {
  Recorder& r = recorder();
  std::lock_guard<std::mutex> lock(r.mu);
  r.events.clear();
  r.process = process.empty() ? str_cat("pid ", ::getpid()) : process;
  r.origin = Clock::now();
  int me = lane(r);
  if (r.thread_names[me].rfind("thread ", 0) == 0) r.thread_names[me] = "main";  // unless named already
  internal::g_enabled.store(true, std::memory_order_relaxed);
}

void set_thread_name(const std::string& name) {
  Recorder& r = recorder();
  std::lock_guard<std::mutex> lock(r.mu);
  lane(r, &name);
}

void stop_and_write(const std::string& path) {
  Recorder& r = recorder();
  std::vector<Event> events;
  std::vector<std::string> names;
  std::string process;
  Clock::time_point origin;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    internal::g_enabled.store(false, std::memory_order_relaxed);
    events.swap(r.events);
    names = r.thread_names;
    process = r.process;
    origin = r.origin;
  }
  auto micros = [&](Clock::time_point t) { return std::chrono::duration<double, std::micro>(t - origin).count(); };
  const int pid = static_cast<int>(::getpid());
  nlohmann::json trace = nlohmann::json::array();
  trace.push_back({{"ph", "M"}, {"name", "process_name"}, {"pid", pid}, {"args", {{"name", process}}}});
  for (size_t t = 0; t < names.size(); ++t) {
    trace.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", pid}, {"tid", t}, {"args", {{"name", names[t]}}}});
  }
  for (const Event& e : events) {
    nlohmann::json event{{"ph", "X"}, {"name", e.name}, {"cat", e.category}, {"pid", pid}, {"tid", e.thread},
                         {"ts", micros(e.begin)}, {"dur", micros(e.end) - micros(e.begin)}};
    if (!e.detail.empty()) event["args"] = {{"detail", e.detail}};
    trace.push_back(std::move(event));
  }
  std::ofstream out(path);
  out << nlohmann::json{{"traceEvents", trace}, {"displayTimeUnit", "ms"}}.dump() << "\n";
  out.close();
  if (!out) throw Error(str_cat("trace: cannot write ", path));
}

}  // namespace gradflow::trace
