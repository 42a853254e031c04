#include "distributed/comm/op_runner.h"

#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "absl/cleanup/cleanup.h"
#include "core/tensor/error.h"
#include "core/trace/trace.h"

namespace gradflow::distributed {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kAbortKey[] = "abort";
// How long a monitor store call may take before the tick moves on.
constexpr Timeout kStoreCallTimeout = std::chrono::seconds(1);

std::string progress_key(int rank) { return str_cat("progress/", rank); }
std::string debug_key(int64_t seq, int rank) { return str_cat("debug/", seq, "/", rank); }

int64_t millis(Timeout t) { return static_cast<int64_t>(t.count()); }

// steady_clock's time from the kernel's tick-granular copy (Linux: CLOCK_MONOTONIC_COARSE, the same
// clock a few ms behind): several times cheaper to read than steady_clock::now(), and deadlines of
// seconds do not need better. Read once per op.
Clock::time_point coarse_now() {
#ifdef CLOCK_MONOTONIC_COARSE
  timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0) {
    return Clock::time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
  }
#endif
  return Clock::now();
}

}  // namespace

OpRunner::OpRunner(RunnerConfig config)
    : config_(std::move(config)), anchor_(std::make_shared<Anchor>(this)) {
  heartbeats_.assign(config_.size, {std::string(), Clock::now()});
  monitor_ = std::thread([this] { monitor_loop(); });
}

OpRunner::~OpRunner() {
  {
    std::lock_guard<std::mutex> lock(anchor_->mu);
    anchor_->self = nullptr;
  }
  std::deque<Queued> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  cv_.notify_all();
  for (Queued& q : dropped) {
    q.work->fail(CollectiveError(CollectiveFailure::kAborted,
                                 str_cat(label(q.seq, q.op.collective, q.op.signature()),
                                         " not run: the communicator was destroyed first")));
  }
  // The monitor keeps watching while a running op finishes, so a stuck one still ends the process.
  if (progress_.joinable()) progress_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    monitor_stop_ = true;
  }
  monitor_cv_.notify_all();
  monitor_.join();
}

std::function<std::string()> OpRunner::failure_probe() const {
  // The note outlives the runner: after the communicator is gone it still tells a failure it had, and
  // "" otherwise (work beside it, such as a checkpoint commit through the store, may finish).
  return [note = failure_note_]() { return note->get(); };
}

void OpRunner::Anchor::on_wait_timeout(int64_t seq, bool collective) {
  std::lock_guard<std::mutex> guard(mu);
  if (self != nullptr) self->time_out(seq, collective);
}

std::string OpRunner::label(int64_t seq, bool collective, const std::string& signature) {
  return collective ? str_cat(signature, " #", seq) : str_cat(signature, " (point-to-point #", seq, ")");
}

CollectiveError OpRunner::error_for(const std::string& op_label, const Failure& failure, bool ran) const {
  if (ran) return CollectiveError(failure.kind, str_cat(op_label, " failed on rank ", config_.rank, ": ", failure.reason));
  return CollectiveError(failure.kind, str_cat(op_label, " not run on rank ", config_.rank,
                                               ": the communicator failed earlier: ", failure.reason));
}

WorkPtr OpRunner::submit(Op op, std::shared_ptr<WorkImpl> work) {
  std::unique_lock<std::mutex> lock(mu_);
  // Inline-only, another thread's op may be running: wait for it before numbering this one, so that ops
  // run in the order of their numbers.
  if (config_.inline_only) wait_until_idle(lock);
  int64_t seq = op.collective ? ++collective_seq_ : ++p2p_seq_;
  work->attach(anchor_, seq);
  if (failure_) {
    work->fail(error_for(label(seq, op.collective, op.signature()), *failure_, false));
    return work;
  }
  if (!busy_ && (config_.inline_only || (!op.async && queue_.empty()))) {
    execute_exclusively(lock, op, seq, *work);
    return work;
  }
  queue_.push_back(Queued{std::move(op), seq, work});
  if (!progress_.joinable()) {
    progress_ = std::thread([this] {
      trace::set_thread_name(str_cat("communication (", config_.backend, ")"));
      progress_loop();
    });
  }
  cv_.notify_all();
  return work;
}

void OpRunner::progress_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return (!queue_.empty() && !busy_) || (stopping_ && queue_.empty()); });
    if (queue_.empty()) return;
    Queued q = std::move(queue_.front());
    queue_.pop_front();
    execute_exclusively(lock, q.op, q.seq, *q.work);
  }
}

void OpRunner::run_now(const char* name, Timeout timeout, absl::FunctionRef<std::string()> signature,
                       absl::FunctionRef<void(Timeout engine_timeout)> body) {
  std::unique_lock<std::mutex> lock(mu_);
  // Numbered only once the ops ahead have run: a queued op numbered earlier never runs after it. (So
  // another thread that never stops queueing async ops would keep it waiting; no caller does.)
  wait_until_idle(lock);
  const int64_t seq = ++collective_seq_;
  if (failure_) throw error_for(label(seq, true, signature()), *failure_, false);
  begin_running(seq, true, name, signature, timeout, nullptr);
  lock.unlock();
  {
    absl::Cleanup done = [&] {
      lock.lock();
      end_running();
    };
    run_guarded(name, seq, true, signature, timeout, body);
  }
  // Set now, it was set while the op ran (its own failure, its timeout, a peer's notice) or in the moment
  // between the engine's return and the lock, where a submitted op's Work would have kept its result:
  // either way the communicator has failed, and this op reports it.
  if (failure_) throw error_for(label(seq, true, signature()), *failure_, true);
}

void OpRunner::wait_until_idle(std::unique_lock<std::mutex>& lock) {
  auto idle = [&] { return (!busy_ && queue_.empty()) || failure_; };
  if (idle()) return;
  ++idle_waiters_;
  cv_.wait(lock, idle);
  --idle_waiters_;
}

void OpRunner::begin_running(int64_t seq, bool collective, const char* name, absl::FunctionRef<std::string()> signature,
                             Timeout timeout, WorkImpl* work) {
  busy_ = true;
  running_.emplace(seq, collective, signature, timeout, coarse_now() + timeout, work);
  if (collective) {
    started_seq_ = seq;
    started_op_ = name;
  }
}

bool OpRunner::running_finished() const { return running_->work != nullptr && running_->work->completed(); }

void OpRunner::end_running() {
  running_.reset();
  busy_ = false;
  // The progress thread waits for queued ops; inline-only, other threads for the running op.
  if (!queue_.empty() || idle_waiters_ > 0) cv_.notify_all();
}

void OpRunner::execute_exclusively(std::unique_lock<std::mutex>& lock, const Op& op, int64_t seq, WorkImpl& work) {
  if (failure_) {
    work.fail(error_for(label(seq, op.collective, op.signature()), *failure_, false));
    return;
  }
  begin_running(seq, op.collective, op.name, op.signature, op.timeout, &work);
  lock.unlock();
  absl::Cleanup done = [&] {
    lock.lock();
    end_running();
  };
  // Completed after its trace span has closed: a thread that waited for it and then ends a trace must
  // find the span inside it.
  std::optional<std::vector<Tensor>> result;
  run_guarded(op.name, seq, op.collective, op.signature, op.timeout,
              [&](Timeout engine_timeout) { result = op.body(engine_timeout); });
  if (result) work.finish(std::move(*result));
}

void OpRunner::run_guarded(const char* name, int64_t seq, bool collective, absl::FunctionRef<std::string()> signature,
                           Timeout timeout, absl::FunctionRef<void(Timeout engine_timeout)> body) {
  try {
    trace::Span span(name, "communication", trace::enabled() ? str_cat("#", seq) : std::string());
    if (config_.debug && collective && config_.comm_store) debug_check(signature(), seq);
    body(timeout + config_.engine_grace);
  } catch (const CollectiveError& e) {
    std::string reason = e.what();
    // An engine that saw a peer vanish cannot say which rank it was; the progress records can.
    if (collective && (e.kind() == CollectiveFailure::kPeerFailure || e.kind() == CollectiveFailure::kTimeout)) {
      std::string missing = missing_ranks(seq);
      if (!missing.empty()) reason += str_cat("; ranks that did not arrive: ", missing);
    }
    abort(e.kind(), reason, true);
  } catch (const std::exception& e) {
    abort(CollectiveFailure::kEngine, e.what(), true);
  } catch (...) {
    abort(CollectiveFailure::kEngine, "the op threw something that is not a std::exception", true);
  }
}

void OpRunner::abort(CollectiveFailure kind, const std::string& reason, bool publish) {
  std::shared_ptr<WorkImpl> running_work;
  std::string running_label;
  std::deque<Queued> dropped;
  Failure failure{kind, reason};
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failure_) {
      failure_ = failure;
      failed_at_ = Clock::now();
      first = true;
      failure_note_->set(reason);
    }
    // Its submitter or queue entry keeps it alive while running_ is set; run_now's op has none (its
    // caller throws the failure when the engine returns).
    if (running_ && running_->work) {
      running_work = running_->work->shared_from_this();
      running_label = label(running_->seq, running_->collective, running_->signature());
    }
    dropped.swap(queue_);
  }
  if (first && config_.on_failure) config_.on_failure();
  if (running_work) running_work->fail(error_for(running_label, failure, true));
  for (Queued& q : dropped) q.work->fail(error_for(label(q.seq, q.op.collective, q.op.signature()), failure, false));
  cv_.notify_all();  // inline-only submitters waiting for the running op: they fail now instead
  if (publish && first && config_.job_store) {
    // Only the first notice stays: every rank then reports the root cause, not its consequences.
    (void)config_.job_store->compare_set(kAbortKey, "", str_cat("rank ", config_.rank, " reported: ", reason));
  }
  monitor_cv_.notify_all();
}

void OpRunner::time_out(int64_t seq, bool collective) {
  std::string signature;
  Timeout timeout{};
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (failure_) return;
    bool pending = false;
    if (running_ && running_->seq == seq && running_->collective == collective && !running_finished()) {
      signature = running_->signature();
      timeout = running_->timeout;
      pending = true;
    }
    for (const Queued& q : queue_) {
      if (q.seq == seq && q.op.collective == collective) {
        signature = q.op.signature();
        timeout = q.op.timeout;
        pending = true;
      }
    }
    // Completed since its time ran out was noticed (the monitor reads the deadline before calling here; a
    // Work's wait gives up just as it finishes): nothing timed out.
    if (!pending) return;
  }
  std::string missing = collective ? missing_ranks(seq) : "";
  std::string reason = str_cat(label(seq, collective, signature.empty() ? "op" : signature), " timed out after ",
                               millis(timeout), " ms on rank ", config_.rank, " (", config_.backend, ")");
  if (collective) {
    reason += missing.empty() ? str_cat("; every rank started it (one may have died inside it)")
                              : str_cat("; ranks that did not arrive: ", missing);
  }
  abort(CollectiveFailure::kTimeout, reason, true);
}

std::string OpRunner::missing_ranks(int64_t seq) {
  if (!config_.comm_store) return "unknown (no store to ask)";
  std::this_thread::sleep_for(config_.heartbeat);  // let every rank publish where it is now
  std::string missing;
  for (int r = 0; r < config_.size; ++r) {
    if (r == config_.rank) continue;
    absl::StatusOr<std::string> progress = config_.comm_store->get(progress_key(r), kStoreCallTimeout);
    std::string entry;
    if (!progress.ok()) {
      entry = str_cat(r, " (no progress reported)");
    } else {
      int64_t their_seq = std::atoll(progress->c_str());
      size_t name_at = progress->find(' ', progress->find(' ') + 1);
      std::string name = name_at == std::string::npos ? "" : progress->substr(name_at + 1);
      if (their_seq >= seq) continue;
      entry = their_seq == 0 ? str_cat(r, " (no collective started yet)")
                             : str_cat(r, " (last started #", their_seq, " ", name, ")");
    }
    missing += (missing.empty() ? "" : ", ") + entry;
  }
  return missing;
}

void OpRunner::debug_check(const std::string& signature, int64_t seq) {
  Store& store = *config_.comm_store;
  absl::Status set = store.set(debug_key(seq, config_.rank), signature);
  if (!set.ok()) throw CollectiveError(CollectiveFailure::kEngine, str_cat("debug check: ", set.ToString()));
  std::vector<std::string> views(config_.size);
  for (int r = 0; r < config_.size; ++r) {
    while (true) {
      absl::StatusOr<std::string> view = store.get(debug_key(seq, r), config_.heartbeat);
      if (view.ok()) {
        views[r] = *view;
        break;
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (failure_) throw CollectiveError(failure_->kind, failure_->reason);
      if (view.status().code() != absl::StatusCode::kDeadlineExceeded) {
        throw CollectiveError(CollectiveFailure::kEngine, str_cat("debug check: ", view.status().ToString()));
      }
    }
  }
  // Keys two ops back are read by everyone by now (they all set this op's key after finishing that one).
  if (seq > 2) (void)store.delete_key(debug_key(seq - 2, config_.rank));
  for (int r = 1; r < config_.size; ++r) {
    if (views[r] != views[0]) {
      throw CollectiveError(CollectiveFailure::kMismatch,
                            str_cat("collective #", seq, " differs between ranks: rank ", r, " called ", views[r],
                                    " while rank 0 called ", views[0]));
    }
  }
}

void OpRunner::monitor_loop() {
  int64_t tick = 0;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (monitor_cv_.wait_for(lock, config_.heartbeat, [&] { return monitor_stop_; })) return;
    }
    monitor_tick(++tick);
  }
}

void OpRunner::monitor_tick(int64_t tick) {
  Clock::time_point now = Clock::now();
  std::optional<std::pair<int64_t, bool>> expired;
  std::optional<std::string> stuck;
  int64_t started_seq;
  const char* started_op;
  bool failed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_ && !failure_ && now > running_->deadline && !running_finished()) {
      expired = {running_->seq, running_->collective};
    }
    if (failure_ && running_ && now - *failed_at_ > config_.exit_grace) stuck = failure_->reason;
    started_seq = started_seq_;
    started_op = started_op_;
    failed = failure_.has_value();
  }
  if (stuck) end_process(*stuck);
  if (expired) time_out(expired->first, expired->second);
  if (!config_.job_store || failed) return;

  (void)config_.comm_store->set(progress_key(config_.rank), str_cat(started_seq, " ", tick, " ", started_op));
  absl::StatusOr<bool> noticed = config_.job_store->check({kAbortKey});
  if (noticed.ok() && *noticed) {
    absl::StatusOr<std::string> notice = config_.job_store->get(kAbortKey, kStoreCallTimeout);
    abort(CollectiveFailure::kPeerFailure, notice.ok() ? *notice : "another rank failed", false);
    return;
  }
  if (!noticed.ok() && noticed.status().code() == absl::StatusCode::kUnavailable) {
    abort(CollectiveFailure::kPeerFailure,
          str_cat("the rendezvous store is unreachable (", noticed.status().message(),
                  "): the process serving it (rank 0) has probably died"),
          false);
    return;
  }
  if (config_.watch_for_dead_ranks) check_dead_ranks(now);
}

void OpRunner::check_dead_ranks(Clock::time_point now) {
  for (int r = 0; r < config_.size; ++r) {
    if (r == config_.rank) continue;
    absl::StatusOr<std::string> beat = config_.comm_store->get(progress_key(r), std::chrono::milliseconds(1));
    auto& [last, changed_at] = heartbeats_[r];
    if (beat.ok() && *beat != last) {
      last = *beat;
      changed_at = now;
    } else if (now - changed_at > config_.dead_after) {
      abort(CollectiveFailure::kPeerFailure,
            str_cat("rank ", r, " stopped responding: no heartbeat for ", millis(config_.dead_after),
                    " ms (its process has probably died)"),
            true);
      return;
    }
  }
}

void OpRunner::end_process(const std::string& why) {
  std::fprintf(stderr,
               "gradflow: rank %d: %s\ngradflow: rank %d: ending this process (exit code %d): its %s engine is "
               "still blocked in the failed collective and cannot be interrupted\n",
               config_.rank, why.c_str(), config_.rank, kCollectiveFailureExitCode, config_.backend.c_str());
  std::fflush(stderr);
  std::_Exit(kCollectiveFailureExitCode);
}

}  // namespace gradflow::distributed
