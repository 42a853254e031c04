#include "strategies/mirrored.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include "core/nn/threaded_update.h"
#include "core/tensor/denormals.h"
#include "core/trace/trace.h"
#include "distributed/comm/communicator.h"
#include "distributed/comm/local_device_group.h"
#include "strategies/spin_wait.h"

namespace gradflow::strategies {

// Where the replica threads meet: to sum a tensor (cross_replica_sum, gradient averaging) or to run one
// update for all (merge_call). Every replica deposits its value; the last to arrive adds them in replica
// order (so every replica gets the identical sum) or runs the update, and all return. A replica that
// fails aborts the others; so does one that calls something else than the round in progress, or that
// returns from its step while others wait in a round: nobody is left waiting.
namespace {
// Whether NCCL can sum one value per replica: each on its replica's GPU (gpus[r]), all of one shape and
// dtype, not bool (which NCCL would add as bytes).
bool nccl_can_sum(const std::vector<Tensor>& per_replica, const std::vector<int>& gpus) {
  for (size_t r = 0; r < per_replica.size(); ++r) {
    const Tensor& v = per_replica[r];
    if (!v.defined() || v.device() != Device::cuda(gpus[r]) || v.dtype() == kBool ||
        v.shape() != per_replica[0].shape() || v.dtype() != per_replica[0].dtype()) {
      return false;
    }
  }
  return true;
}
}  // namespace

struct MirroredStrategy::Rendezvous {
  enum class Kind { kNone, kSum, kMerge, kGradients };

  // spin: whether waiting replicas spin a while before they sleep (each has a core of its own).
  Rendezvous(int n, bool spin) : n(n), spin(spin), slots(n), pointers(n), returned(n, false) {}
  bool spins() const { return spin; }

  std::unique_ptr<distributed::LocalDeviceGroup> group;  // set when NCCL sums across the GPUs

  // Undefined values are left out (a replica without a gradient); the sum of none is undefined.
  Tensor sum(int replica, const Tensor& value) {
    autodiff::SuspendRecording no_record;  // the addition belongs to no replica's tape
    std::unique_lock<std::mutex> lock(mu);
    const uint64_t round = enter(replica, Kind::kSum);
    slots[replica] = value;
    if (++arrived == n) {
      const Tensor* first = nullptr;
      for (int r = 0; r < n; ++r) {
        if (!slots[r].defined()) continue;
        if (!first) {
          first = &slots[r];
        } else if (slots[r].shape() != first->shape() || slots[r].dtype() != first->dtype()) {
          abort_locked(str_cat("MirroredStrategy: replica ", r, " passed ", shape_str(slots[r].shape()), " ",
                               dtype_name(slots[r].dtype()), " to a cross-replica sum where another passed ",
                               shape_str(first->shape()), " ", dtype_name(first->dtype())));
          std::fill(slots.begin(), slots.end(), Tensor());
          throw StateError(reason);
        }
      }
      result = Tensor();
      results.clear();
      if (group && nccl_can_sum(slots, group->devices())) {
        // Every replica's value is on its own GPU: NCCL sums them there, each GPU keeping the sum.
        std::vector<Tensor> values = std::move(slots);
        slots.assign(n, Tensor());
        try {
          results = group->all_reduce_sum(values);
        } catch (const std::exception& e) {
          abort_locked(str_cat("MirroredStrategy: ", e.what()));  // the others throw StateError with it
          throw;
        }
        end_round();
        Tensor mine = results[replica];
        lock.unlock();
        return mine;
      }
      // Over devices, on the first contributor's device (copies there, in replica order).
      Tensor total;
      for (Tensor& slot : slots) {
        if (slot.defined()) total = total.defined() ? total + slot.to(total.device()) : slot.contiguous();
        slot = Tensor();
      }
      result = total;
      end_round();
    } else {
      check_stranded();
      wait_for_round(lock, round);
    }
    Tensor mine = results.empty() ? result : results[replica];
    lock.unlock();
    // Over devices each replica gets the sum where its own value was (host bookkeeping stays on the
    // host), or on its device (its thread's DeviceScope) when it passed nothing.
    if (!mine.defined() || current_mirror_replica() < 0) return mine;
    const Device where = value.defined() ? value.device() : current_device();
    return mine.device() == where ? mine : mine.to(where);
  }

  // merge_call: the last replica to arrive runs fn with everyone's pointer (the others wait: what they
  // point to stays alive); its error is thrown on every replica.
  void merge(int replica, const void* mine, const std::function<void(const std::vector<const void*>&)>& fn,
             Kind k = Kind::kMerge) {
    std::unique_lock<std::mutex> lock(mu);
    const uint64_t round = enter(replica, k);
    pointers[replica] = mine;
    if (++arrived < n) {
      check_stranded();
      wait_for_round(lock, round);
      if (merge_error) std::rethrow_exception(merge_error);
      return;
    }
    lock.unlock();
    std::exception_ptr error;
    try {
      fn(pointers);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    merge_error = error;
    std::fill(pointers.begin(), pointers.end(), nullptr);
    end_round();
    if (error) std::rethrow_exception(error);
  }

  // Replica `replica`'s step function has returned.
  void step_returned(int replica) {
    std::lock_guard<std::mutex> lock(mu);
    returned[replica] = true;
    ++finished;
    check_stranded();
  }

  void abort(const std::string& why = "") {
    std::lock_guard<std::mutex> lock(mu);
    abort_locked(why);
  }
  void reset() {
    std::lock_guard<std::mutex> lock(mu);
    aborted = false;
    reason.clear();
    arrived = 0;
    finished = 0;
    kind = Kind::kNone;
    std::fill(returned.begin(), returned.end(), false);
  }

 private:
  static const char* name(Kind k) {
    switch (k) {
      case Kind::kMerge: return "a merge_call (apply_gradients)";
      case Kind::kGradients: return "a gradient average (strategy.gradient)";
      default: return "a cross-replica sum";
    }
  }

  // Joins the round in progress (or opens one); its generation.
  uint64_t enter(int replica, Kind k) {
    if (aborted) throw StateError(reason);
    if (arrived == 0) {
      kind = k;
    } else if (kind != k) {
      abort_locked(str_cat("MirroredStrategy: replica ", replica, " called ", name(k), " while other replicas wait in ",
                           name(kind), ": every replica must make the same cross-replica calls in the same order"));
      throw StateError(reason);
    }
    return generation;
  }
  void end_round() {
    arrived = 0;
    kind = Kind::kNone;
    ++generation;
    cv.notify_all();
  }
  // Replicas wait in a round that the others, having returned from their step, will never join.
  void check_stranded() {
    if (arrived == 0 || arrived + finished < n || aborted) return;
    std::string gone;
    for (int r = 0; r < n; ++r) {
      if (returned[r]) gone += str_cat(gone.empty() ? "" : ", ", r);
    }
    abort_locked(str_cat("MirroredStrategy: replica(s) ", gone, " returned from the step while the others wait in ",
                         name(kind), ": every replica must make the same cross-replica calls (strategy.gradient, ",
                         "apply_gradients, SyncBatchNormalization), also with no rows"));
  }
  // The round's last replica usually arrives within microseconds (SyncBatchNormalization's sums, a custom
  // loop's gradients one by one): waiting without the lock first, spinning, spares most rounds a sleep.
  void wait_for_round(std::unique_lock<std::mutex>& lock, uint64_t round) {
    const auto over = [&] {
      return generation.load(std::memory_order_acquire) != round || aborted.load(std::memory_order_acquire);
    };
    lock.unlock();
    const bool ended = spin_until(spin, over);
    lock.lock();
    if (!ended) cv.wait(lock, over);
    if (generation == round) throw StateError(reason);
  }
  void abort_locked(const std::string& why) {
    if (!aborted) reason = why.empty() ? "MirroredStrategy: another replica failed" : why;
    aborted = true;
    cv.notify_all();
  }

  const int n;
  const bool spin;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Tensor> slots;
  Tensor result;                                        // the sum of a round of copies
  std::vector<Tensor> results;                          // or, after NCCL, each replica's
  std::vector<const void*> pointers;
  std::exception_ptr merge_error;
  std::vector<bool> returned;  // per replica, this run
  int arrived = 0;
  int finished = 0;
  Kind kind = Kind::kNone;
  // Written under mu; read without it by spinning waiters.
  std::atomic<uint64_t> generation{0};
  std::atomic<bool> aborted{false};
  std::string reason;  // what every replica throws once aborted
};

namespace {

// The gradients of replicas that share host memory, averaged in one round: the last replica to arrive
// plans (checks the shapes, allocates each average), then every replica adds its part of every average
// (thread_part): the replicas' gradients times their weights' shares, in replica order.
struct SplitAverage {
  struct Source {
    const Tensor* grad;
    double factor;
  };
  struct Plan {
    std::vector<Tensor> averages;             // undefined where no replica has the gradient
    std::vector<std::vector<Source>> sources;  // per gradient, empty where plan() computed it whole

    void add_part(int r, int n) {
      internal::DenormalFlushScope flush_denormals;  // as the ops that averaged before
      for (size_t i = 0; i < averages.size(); ++i) {
        if (sources[i].empty()) continue;
        const auto [begin, end] = thread_part(averages[i].numel(), averages[i].dtype(), r, n);
        if (averages[i].dtype() == kF32) {
          weighted_sum(averages[i].data<float>(), sources[i], begin, end);
        } else {
          weighted_sum(averages[i].data<double>(), sources[i], begin, end);
        }
      }
    }
    template <typename T>
    static void weighted_sum(T* dst, const std::vector<Source>& sources, int64_t begin, int64_t end) {
      const T* first = sources[0].grad->data<T>();
      const T f0 = static_cast<T>(sources[0].factor);
      for (int64_t k = begin; k < end; ++k) dst[k] = first[k] * f0;
      for (size_t s = 1; s < sources.size(); ++s) {
        const T* src = sources[s].grad->data<T>();
        const T f = static_cast<T>(sources[s].factor);
        for (int64_t k = begin; k < end; ++k) dst[k] += src[k] * f;
      }
    }
  };
  // One replica's part of the round: its gradients and the share of the total weight its rows have
  // (0: it adds nothing); plan() hands every replica the same plan.
  struct Contribution {
    const std::vector<Tensor>* grads;
    double factor;
    mutable std::shared_ptr<Plan> plan;
  };

  // seen: per gradient, how many replicas have it; then the total weight (the round before).
  static void plan(const std::vector<const void*>& all, const std::vector<double>& seen) {
    auto plan = std::make_shared<Plan>();
    const size_t n = seen.size() - 1;
    plan->averages.resize(n);
    plan->sources.resize(n);
    for (size_t i = 0; i < n; ++i) {
      if (seen[i] == 0) continue;
      std::vector<Source> sources;
      for (size_t r = 0; r < all.size(); ++r) {
        const auto& c = *static_cast<const Contribution*>(all[r]);
        if (c.factor <= 0 || c.grads->size() <= i || !(*c.grads)[i].defined()) continue;
        const Tensor& g = (*c.grads)[i];
        const Tensor& first = sources.empty() ? g : *sources[0].grad;
        if (g.shape() != first.shape() || g.dtype() != first.dtype()) {
          throw StateError(str_cat("MirroredStrategy: replica ", r, " passed a ", shape_str(g.shape()), " ",
                                   dtype_name(g.dtype()), " gradient for variable ", i, " where another passed ",
                                   shape_str(first.shape()), " ", dtype_name(first.dtype())));
        }
        sources.push_back({&g, c.factor});
      }
      const bool host = std::all_of(sources.begin(), sources.end(), [](const Source& s) {
        return s.grad->device().is_cpu() && s.grad->is_contiguous() &&
               (s.grad->dtype() == kF32 || s.grad->dtype() == kF64);
      });
      if (host) {
        plan->averages[i] = empty(sources[0].grad->shape(), sources[0].grad->dtype());
        plan->sources[i] = std::move(sources);
        continue;
      }
      Tensor total;  // elsewhere (a gradient on a device), whole, here
      for (const Source& s : sources) {
        Tensor part = *s.grad * s.factor;
        total = total.defined() ? total + part.to(total.device()) : part;
      }
      plan->averages[i] = total;
    }
    for (const void* c : all) static_cast<const Contribution*>(c)->plan = plan;
  }
};

}  // namespace

// The context current on replica r's thread.
class MirroredStrategy::ThreadReplica : public ReplicaContext {
 public:
  ThreadReplica(int id, int n, Rendezvous& rendezvous) : id_(id), n_(n), rendezvous_(rendezvous) {}
  int num_replicas() const override { return n_; }
  std::string strategy_name() const override { return "MirroredStrategy"; }
  int replica_id() const override { return id_; }
  bool in_process() const override { return true; }
  bool on_replica_thread() const override { return true; }
  void broadcast_variables(const std::vector<Variable>&) override {}
  Tensor all_reduce_sum(const Tensor& t) override { return rendezvous_.sum(id_, t); }
  std::vector<double> sum(const std::vector<double>& values) override {
    if (values.empty()) return {};
    Tensor t = from_vector<double>(values, {static_cast<int64_t>(values.size())});
    return all_reduce_sum(t).to_vector<double>();
  }
  std::unique_ptr<GradientAverager> average_gradients(const std::vector<Variable>&, double, double, bool) override {
    throw StateError("MirroredStrategy: a replica thread does not average gradients (fit does, on the calling thread)");
  }
  uint64_t shared_seed() override {
    throw StateError("MirroredStrategy: a replica thread has no shared seed (fit draws it on the calling thread)");
  }
  void merge_call(const void* mine, const std::function<void(const std::vector<const void*>&)>& fn) override {
    rendezvous_.merge(id_, mine, [&fn](const std::vector<const void*>& all) {
      MirrorReplicaScope cross_replica(-1);  // the update is for all: replica 0's variables, then every copy
      fn(all);
    });
  }

  // grads averaged across the replicas, each weighted by its rows (a replica without rows, or without a
  // variable's gradient, adds nothing to it): the identical tensors on every replica. Collective.
  // shared: the replicas share the variables in host memory (no devices): then one round averages all
  // the gradients, each replica adding its part of each (SplitAverage), instead of one round per
  // gradient added up by the last replica to arrive.
  std::vector<Tensor> average(const std::vector<Tensor>& grads, double weight, bool shared) {
    autodiff::SuspendRecording no_record;
    const size_t n = grads.size();
    std::vector<double> head(n + 1, 0.0);
    for (size_t i = 0; i < n; ++i) head[i] = weight > 0 && grads[i].defined() ? 1.0 : 0.0;
    head[n] = weight;
    std::vector<double> seen = rendezvous_.sum(id_, from_vector<double>(head, {static_cast<int64_t>(n + 1)})).to_vector<double>();
    std::vector<Tensor> out(n);
    const double total = seen[n];
    if (total <= 0) return out;
    if (shared) {
      SplitAverage::Contribution mine{&grads, weight > 0 ? weight / total : 0.0};
      rendezvous_.merge(id_, &mine, [&](const std::vector<const void*>& all) { SplitAverage::plan(all, seen); },
                        Rendezvous::Kind::kGradients);
      mine.plan->add_part(id_, n_);
      // Every part is written before any replica uses the averages, or lets its gradients go.
      rendezvous_.merge(id_, nullptr, [](const std::vector<const void*>&) {}, Rendezvous::Kind::kGradients);
      return mine.plan->averages;
    }
    for (size_t i = 0; i < n; ++i) {
      if (seen[i] == 0) continue;  // no replica has this gradient: undefined on all (the optimizer skips it)
      out[i] = rendezvous_.sum(id_, weight > 0 && grads[i].defined() ? grads[i] * (weight / total) : Tensor());
    }
    return out;
  }

 private:
  int id_, n_;
  Rendezvous& rendezvous_;
};

namespace {

// The calling thread's averager: it holds every replica's rows, so averaging is passing through.
class PassThroughAverager : public ReplicaContext::GradientAverager {
 public:
  PassThroughAverager(size_t n, double weight) : grads_(n), weight_(weight) {}
  void ready(size_t i, const Tensor& grad) override { grads_.at(i) = grad; }
  std::pair<std::vector<Tensor>, double> finish() override {
    if (weight_ == 0) return {{}, 0.0};
    return {std::move(grads_), weight_};
  }

 private:
  std::vector<Tensor> grads_;
  double weight_;
};

}  // namespace

namespace {
std::string describe_devices(const std::vector<Device>& devices) {
  std::string text;
  for (const Device& d : devices) text += str_cat(text.empty() ? "" : ", ", d.str());
  return text;
}
}  // namespace

MirroredStrategy::MirroredStrategy(std::vector<Device> devices, CrossDeviceOps cross_device_ops)
    : MirroredStrategy(static_cast<int>(devices.size())) {
  for (const Device& d : devices) DeviceScope check(d);  // DeviceError for a device this process cannot use
  devices_ = std::move(devices);
  std::vector<int> gpus;
  for (const Device& d : devices_) {
    if (d.is_cuda() && std::find(gpus.begin(), gpus.end(), d.index) == gpus.end()) gpus.push_back(d.index);
  }
  const bool nccl_possible = gpus.size() == devices_.size() && distributed::local_device_group_built();
  if (cross_device_ops == CrossDeviceOps::kNcclAllReduce && !nccl_possible) {
    throw ValueError(str_cat("MirroredStrategy: CrossDeviceOps::kNcclAllReduce needs distinct GPUs",
                             distributed::local_device_group_built() ? "" : " and a build with NCCL", "; got ",
                             describe_devices(devices_)));
  }
  if (cross_device_ops == CrossDeviceOps::kNcclAllReduce) {
    rendezvous_->group = distributed::make_local_device_group(gpus);
    cross_device_ops_ = CrossDeviceOps::kNcclAllReduce;
  } else if (cross_device_ops == CrossDeviceOps::kAuto && nccl_possible && gpus.size() > 1) {
    // As tf does: NCCL where it sets up; copies where it does not (no P2P or shared memory for NCCL).
    try {
      rendezvous_->group = distributed::make_local_device_group(gpus);
      cross_device_ops_ = CrossDeviceOps::kNcclAllReduce;
    } catch (const distributed::CollectiveError&) {
    }
  }
}

void MirroredStrategy::broadcast_variables(const std::vector<Variable>& vars) {
  if (devices_.empty()) return;  // the replicas share them
  for (Variable v : vars) {
    v.mirror_on(devices_);
    bool known = std::any_of(kept_by_replica_0_.begin(), kept_by_replica_0_.end(),
                             [&](const Variable& k) { return k.same_as(v); });
    if (!v.trainable() && !known) kept_by_replica_0_.push_back(v);
  }
}

std::optional<Device> MirroredStrategy::scope_device() const {
  return devices_.empty() ? std::nullopt : std::optional<Device>(devices_[0]);
}

MirroredStrategy::MirroredStrategy(int num_replicas) : num_replicas_(num_replicas) {
  if (num_replicas < 1) throw ValueError(str_cat("MirroredStrategy: num_replicas must be at least 1, got ", num_replicas));
  rendezvous_ = std::make_unique<Rendezvous>(num_replicas, static_cast<size_t>(num_replicas) <= usable_cores());
  for (int r = 0; r < num_replicas; ++r) replicas_.push_back(std::make_unique<ThreadReplica>(r, num_replicas, *rendezvous_));
}

MirroredStrategy::~MirroredStrategy() { threads_.reset(); }  // before the contexts its threads hold

// One thread per replica, started on first use and kept for the strategy's lifetime (starting threads
// every step would cost tens of microseconds each): each has its replica's context current for good and
// waits for the next round's function. Replicas sharing the variables on the CPU leave replica 0 to the
// calling thread, which would only wait otherwise: one wake-up less per step.
//
// Waiting threads (a replica thread for the next round, the caller for the round's end) spin for a while
// before they sleep, where every replica has a core of its own (spin_wait.h): the seed's model's replica
// thread otherwise started its step 50-90 us after the caller.
class MirroredStrategy::ReplicaThreads {
 public:
  // devices: each replica's (its thread reads its copies of the variables there), or empty (shared).
  ReplicaThreads(std::vector<std::unique_ptr<ThreadReplica>>& replicas, Rendezvous& rendezvous,
                 const std::vector<Device>& devices)
      : errors_(replicas.size()), rendezvous_(rendezvous), spin_(rendezvous.spins()) {
    if (devices.empty()) caller_runs_ = replicas[0].get();
    for (size_t r = caller_runs_ ? 1 : 0; r < replicas.size(); ++r) {
      std::optional<Device> device = devices.empty() ? std::nullopt : std::optional<Device>(devices[r]);
      workers_.emplace_back([this, r, context = replicas[r].get(), device] {
        trace::set_thread_name(str_cat("replica ", r));
        ReplicaContextScope scope(context, device);
        std::optional<MirrorReplicaScope> copies;
        if (device) copies.emplace(static_cast<int>(r));
        uint64_t seen = 0;
        while (wait_for_round(seen)) {
          // The round this thread runs, read before its end lets the caller start the next one.
          seen = round_.load(std::memory_order_acquire);
          run_replica(*task_, static_cast<int>(r));
          if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            std::lock_guard<std::mutex> lock(mu_);
            done_cv_.notify_all();
          }
        }
      });
    }
  }
  ~ReplicaThreads() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_.store(true, std::memory_order_release);
    }
    work_cv_.notify_all();
    for (std::thread& t : workers_) t.join();
  }
  // Runs fn(r) on every replica's thread; returns each replica's error (or none) once all have finished.
  std::vector<std::exception_ptr> run(const std::function<void(int)>& fn) {
    std::fill(errors_.begin(), errors_.end(), nullptr);
    task_ = &fn;
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mu_);  // a worker about to sleep sees the new round, or is woken
      round_.fetch_add(1, std::memory_order_release);
    }
    work_cv_.notify_all();
    if (caller_runs_) {
      // As on a replica thread of its own: replica 0's context, and none of the caller's tapes.
      ReplicaContextScope scope(caller_runs_);
      autodiff::SeparateRecording separate;
      run_replica(fn, 0);
    }
    const auto done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
    if (!spin_until(spin_, done)) {
      std::unique_lock<std::mutex> lock(mu_);
      done_cv_.wait(lock, done);
    }
    task_ = nullptr;
    return errors_;
  }

 private:
  // A replica thread: waits until a round after `seen` starts (true) or the threads stop (false).
  bool wait_for_round(uint64_t seen) {
    const auto changed = [&] {
      return stop_.load(std::memory_order_acquire) || round_.load(std::memory_order_acquire) != seen;
    };
    if (!spin_until(spin_, changed)) {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, changed);
    }
    return !stop_.load(std::memory_order_acquire);
  }
  void run_replica(const std::function<void(int)>& fn, int r) {
    try {
      fn(r);
      rendezvous_.step_returned(r);
    } catch (...) {
      errors_[r] = std::current_exception();
      rendezvous_.abort();  // the others may wait for this replica in a rendezvous
    }
  }

  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  const std::function<void(int)>* task_ = nullptr;  // written before round_ advances, read after
  std::atomic<uint64_t> round_{0};
  std::atomic<int> pending_{0};  // replica threads still running this round's function
  std::atomic<bool> stop_{false};
  std::vector<std::exception_ptr> errors_;
  Rendezvous& rendezvous_;
  const bool spin_;
  ThreadReplica* caller_runs_ = nullptr;  // replica 0's context, when the calling thread runs it
  std::vector<std::thread> workers_;
};

void MirroredStrategy::run_replicas(const std::function<void(int)>& fn) {
  rendezvous_->reset();
  if (!threads_) threads_ = std::make_unique<ReplicaThreads>(replicas_, *rendezvous_, devices_);
  std::vector<std::exception_ptr> errors = threads_->run(fn);
  // The first replica's own error, not the "another replica failed" of those it stopped.
  for (const std::exception_ptr& e : errors) {
    if (!e) continue;
    try {
      std::rethrow_exception(e);
    } catch (const StateError& s) {
      if (std::string(s.what()).find("another replica failed") != std::string::npos) continue;
      throw;
    }
  }
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

std::vector<Tensor> MirroredStrategy::sum_replica_gradients(const std::vector<std::vector<Tensor>>& grads,
                                                           const std::vector<Variable>& vars) {
  distributed::LocalDeviceGroup* group = rendezvous_->group.get();
  if (group == nullptr) return ReplicaContext::sum_replica_gradients(grads, vars);
  // The variables every replica has a gradient of, each on its own GPU, are summed by NCCL onto replica
  // 0's GPU (where the variables live) in one group call; the others (a replica without rows or without
  // that gradient) through copies.
  std::vector<size_t> by_nccl;
  std::vector<std::vector<Tensor>> nccl_values(num_replicas_), by_copies = grads;
  std::vector<Tensor> column(num_replicas_);
  for (size_t i = 0; i < vars.size(); ++i) {
    for (int r = 0; r < num_replicas_; ++r) column[r] = grads[r].size() > i ? grads[r][i] : Tensor();
    if (vars[i].device() != devices_[0] || !nccl_can_sum(column, group->devices())) continue;
    by_nccl.push_back(i);
    for (int r = 0; r < num_replicas_; ++r) {
      nccl_values[r].push_back(grads[r][i]);
      by_copies[r][i] = Tensor();
    }
  }
  std::vector<Tensor> summed = ReplicaContext::sum_replica_gradients(by_copies, vars);
  if (by_nccl.empty()) return summed;
  std::vector<Tensor> sums = group->reduce_sum(nccl_values, 0);
  for (size_t k = 0; k < by_nccl.size(); ++k) summed[by_nccl[k]] = sums[k];
  return summed;
}

std::unique_ptr<ReplicaContext::GradientAverager> MirroredStrategy::average_gradients(const std::vector<Variable>& vars,
                                                                                      double weight, double,
                                                                                      bool) {
  return std::make_unique<PassThroughAverager>(vars.size(), weight);
}

uint64_t MirroredStrategy::shared_seed() {
  return static_cast<uint64_t>(random_uniform({1}, 0, 9007199254740992.0, kF64).item());
}

int MirroredStrategy::replica_on_this_thread() const {
  ReplicaContext* ctx = current_replica_context();
  for (int r = 0; r < num_replicas_; ++r) {
    if (ctx == replicas_[r].get()) return r;
  }
  return -1;
}

void MirroredStrategy::run_local_replicas(const std::vector<double>& weights, const std::function<void(int)>& fn) {
  if (replica_on_this_thread() >= 0) throw StateError("MirroredStrategy: run() called inside run()");
  weights_ = weights;
  const RandomStream step = take_random_stream(std::nullopt);  // one draw: the same numbers every run
  run_replicas([&](int r) {
    Generator generator(replica_seed(step, r));
    GeneratorScope scope(generator);
    fn(r);
  });
  // Replica 0 updated what it keeps (moving statistics) in its copy: the others follow.
  for (const Variable& v : kept_by_replica_0_) v.refresh_mirrors();
}

std::vector<Tensor> MirroredStrategy::gradient(GradientTape& tape, const Tensor& target, const std::vector<Variable>& vars) {
  std::vector<Tensor> grads = tape.gradient(target, std::vector<GradSource>(vars.begin(), vars.end()));
  const int r = replica_on_this_thread();
  return r < 0 ? grads : replicas_[r]->average(grads, weights_.at(r), devices_.empty());
}

std::vector<Tensor> MirroredStrategy::reduce_gradients(const std::vector<Tensor>& grads) {
  const int r = replica_on_this_thread();
  return r < 0 ? grads : replicas_[r]->average(grads, weights_.at(r), devices_.empty());
}

}  // namespace gradflow::strategies
