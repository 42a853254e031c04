// OpRunner: runs a communicator's ops one at a time in call order, and makes sure none hangs silently.
//
// An op runs on the calling thread when nothing is queued or running and the call is not async (the
// engine is then called with nothing in between), otherwise on the runner's progress thread; with
// RunnerConfig::inline_only, always on the calling thread. Collectives
// are numbered 1, 2, ... in call order (the same numbers on every rank); point-to-point ops have their
// own numbers.
//
// The monitor thread, every `heartbeat`:
//   - publishes this rank's progress to the store ("progress/<rank>" = "<seq> <tick> <op>"), which is both
//     its heartbeat and what a timed-out rank reads to name the ranks that did not arrive;
//   - fails the running op when its timeout has passed (kTimeout);
//   - looks for a failure notice ("abort", set by whichever rank failed first) and fails everything
//     pending with it (kPeerFailure); on rank 0 of a job it also declares dead a rank whose heartbeat
//     stopped for `dead_after`, and publishes that;
//   - once failed, ends the process (after printing the error) if an engine call is still stuck after a
//     short grace: an engine blocked in a collective with a dead peer would otherwise hang forever.
// With debug on, each collective first checks through the store that every rank is calling the same op.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/function_ref.h"
#include "distributed/comm/communicator.h"
#include "distributed/comm/work.h"

namespace gradflow::distributed {

struct RunnerConfig {
  int rank = 0;
  int size = 1;
  std::string backend;                // for messages
  std::shared_ptr<Store> job_store;   // the job-wide failure notice lives here; may be null (MPI)
  std::shared_ptr<Store> comm_store;  // this communicator's keys (progress, debug); null iff job_store is
  bool watch_for_dead_ranks = false;  // rank 0 of a root communicator
  bool debug = false;
  Timeout heartbeat = std::chrono::milliseconds(200);
  Timeout dead_after = std::chrono::seconds(5);
  Timeout exit_grace = std::chrono::seconds(3);
  // The engine gets this much longer than the op: the watchdog reports the timeout first (naming the
  // ranks that did not arrive), and an engine that honours timeouts returns before the watchdog would end
  // the process for being stuck.
  Timeout engine_grace = std::chrono::milliseconds(1500);
  // Every op runs on the thread that submits it, async ones too (Engine::inline_only: MPI below
  // MPI_THREAD_SERIALIZED); a second thread waits for the running op first.
  bool inline_only = false;
  // Called (once, outside the runner's lock) when the runner first fails, so that the engine can stop
  // waiting in a call that can no longer succeed (Engine::interrupt).
  std::function<void()> on_failure;
};

class OpRunner {
 public:
  struct Op {
    const char* name = "";  // "all_reduce"
    // "all_reduce([128,10] f32, sum)": built only when needed (debug checks, errors), so that an op
    // costs no string formatting on its fast path.
    std::function<std::string()> signature;
    bool collective = true;
    Timeout timeout = kDefaultCollectiveTimeout;
    bool async = false;
    // Calls the engine, giving it `engine_timeout` (the op's timeout plus RunnerConfig::engine_grace);
    // throws CollectiveError on failure.
    std::function<std::vector<Tensor>(Timeout engine_timeout)> body;
  };

  explicit OpRunner(RunnerConfig config);
  // Fails every op still queued with kAborted; waits for a running one (bounded by its timeout).
  ~OpRunner();
  OpRunner(const OpRunner&) = delete;
  OpRunner& operator=(const OpRunner&) = delete;

  // Numbers op and runs or queues it; `work` (a WorkImpl or a subclass holding the op's state) is what
  // the caller gets back.
  WorkPtr submit(Op op, std::shared_ptr<WorkImpl> work);
  WorkPtr submit(Op op) {
    auto work = std::make_shared<WorkImpl>(op.timeout, op.collective);
    return submit(std::move(op), std::move(work));
  }

  // Runs a collective on the calling thread, without a Work, once the ops queued or running before it
  // (on the progress thread, or inline on another thread) have finished, and returns when it is done;
  // throws the CollectiveError its Work would have held. The arguments are used only during the call.
  void run_now(const char* name, Timeout timeout, absl::FunctionRef<std::string()> signature,
               absl::FunctionRef<void(Timeout engine_timeout)> body);

  // Says why the runner failed ("" while it works; that it was destroyed, once it is), callable from any
  // thread, also after the runner is gone.
  std::function<std::string()> failure_probe() const;

  // Fails the running and queued ops and every later one with `reason`; with publish, tells the other
  // ranks (the first notice in the job wins).
  void abort(CollectiveFailure kind, const std::string& reason, bool publish);

 private:
  struct Queued {
    Op op;
    int64_t seq;
    std::shared_ptr<WorkImpl> work;
  };
  // Lets a Work that outlives its runner call back safely (self is cleared by the destructor).
  struct Anchor : WorkTimeoutListener {
    explicit Anchor(OpRunner* runner) : self(runner) {}
    void on_wait_timeout(int64_t seq, bool collective) override;
    std::mutex mu;
    OpRunner* self;
  };
  struct Failure {
    CollectiveFailure kind;
    std::string reason;  // the first failure, as its rank described it
  };
  struct Running {
    int64_t seq;
    bool collective;
    absl::FunctionRef<std::string()> signature;  // valid while it runs
    Timeout timeout;
    std::chrono::steady_clock::time_point deadline;
    WorkImpl* work;  // kept alive by its submitter or its queue entry; null for run_now's op
  };

  // Waits (lock held) until no op runs or is queued, or the runner has failed.
  void wait_until_idle(std::unique_lock<std::mutex>& lock);
  // Mark the op running and done (lock held).
  void begin_running(int64_t seq, bool collective, const char* name, absl::FunctionRef<std::string()> signature,
                     Timeout timeout, WorkImpl* work);
  void end_running();
  // The running op's Work has completed (it only waits for end_running): it can no longer time out.
  bool running_finished() const;
  // Runs op with busy_ set (lock held on entry and exit, released while it runs): one op at a time.
  void execute_exclusively(std::unique_lock<std::mutex>& lock, const Op& op, int64_t seq, WorkImpl& work);
  // Calls body inside the op's trace span; a failure aborts the runner (and so fails the op).
  void run_guarded(const char* name, int64_t seq, bool collective, absl::FunctionRef<std::string()> signature,
                   Timeout timeout, absl::FunctionRef<void(Timeout engine_timeout)> body);
  void progress_loop();
  void monitor_loop();
  void monitor_tick(int64_t tick);
  void check_dead_ranks(std::chrono::steady_clock::time_point now);
  void time_out(int64_t seq, bool collective);
  CollectiveError error_for(const std::string& label, const Failure& failure, bool ran) const;
  void debug_check(const std::string& signature, int64_t seq);
  std::string missing_ranks(int64_t seq);
  static std::string label(int64_t seq, bool collective, const std::string& signature);
  [[noreturn]] void end_process(const std::string& why);

  const RunnerConfig config_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;
  bool busy_ = false;  // an op is executing (inline or on the progress thread)
  int idle_waiters_ = 0;  // threads in wait_until_idle
  bool stopping_ = false;
  int64_t collective_seq_ = 0, p2p_seq_ = 0;
  int64_t started_seq_ = 0;         // the last collective that began executing here
  const char* started_op_ = "";     // its name
  std::optional<Running> running_;  // the op inside the engine now
  std::optional<Failure> failure_;
  std::optional<std::chrono::steady_clock::time_point> failed_at_;
  // Rank 0's view of each rank's heartbeat: last value seen and when it changed.
  std::vector<std::pair<std::string, std::chrono::steady_clock::time_point>> heartbeats_;
  std::shared_ptr<Anchor> anchor_;
  // The first failure's reason, for failure_probe (its own lock: read from any thread, any time).
  struct FailureNote {
    void set(const std::string& why) {
      std::lock_guard<std::mutex> lock(mu);
      if (reason.empty()) reason = why;
    }
    std::string get() {
      std::lock_guard<std::mutex> lock(mu);
      return reason;
    }
    std::mutex mu;
    std::string reason;
  };
  std::shared_ptr<FailureNote> failure_note_ = std::make_shared<FailureNote>();
  std::condition_variable monitor_cv_;
  bool monitor_stop_ = false;
  std::thread progress_;
  std::thread monitor_;
};

}  // namespace gradflow::distributed
