#include "strategies/mirrored.h"

#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

namespace gradflow::strategies {

// Where the replica threads meet to sum a tensor (cross_replica_sum): every replica deposits its value,
// the last to arrive adds them in replica order (so every replica gets the identical sum), and all
// return it. A replica that fails aborts the others instead of leaving them waiting.
struct MirroredStrategy::Rendezvous {
  explicit Rendezvous(int n) : slots(n) {}

  Tensor sum(int replica, const Tensor& value) {
    autodiff::SuspendRecording no_record;  // the addition belongs to no replica's tape
    std::unique_lock<std::mutex> lock(mu);
    if (aborted) throw StateError("MirroredStrategy: another replica failed");
    const uint64_t round = generation;
    slots[replica] = value;
    if (++arrived == static_cast<int>(slots.size())) {
      Tensor total = slots[0].contiguous();
      for (size_t r = 1; r < slots.size(); ++r) total = total + slots[r];
      result = total;
      arrived = 0;
      ++generation;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return generation != round || aborted; });
      if (generation == round) throw StateError("MirroredStrategy: another replica failed");
    }
    return result;
  }

  void abort() {
    std::lock_guard<std::mutex> lock(mu);
    aborted = true;
    cv.notify_all();
  }
  void reset() {
    std::lock_guard<std::mutex> lock(mu);
    aborted = false;
    arrived = 0;
  }

  std::mutex mu;
  std::condition_variable cv;
  std::vector<Tensor> slots;
  Tensor result;
  int arrived = 0;
  uint64_t generation = 0;
  bool aborted = false;
};

// The context current on replica r's thread.
class MirroredStrategy::ThreadReplica : public ReplicaContext {
 public:
  ThreadReplica(int id, int n, Rendezvous& rendezvous) : id_(id), n_(n), rendezvous_(rendezvous) {}
  int num_replicas() const override { return n_; }
  std::string strategy_name() const override { return "MirroredStrategy"; }
  int replica_id() const override { return id_; }
  bool in_process() const override { return true; }
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

MirroredStrategy::MirroredStrategy(int num_replicas) : num_replicas_(num_replicas) {
  if (num_replicas < 1) throw ValueError(str_cat("MirroredStrategy: num_replicas must be at least 1, got ", num_replicas));
  rendezvous_ = std::make_unique<Rendezvous>(num_replicas);
  for (int r = 0; r < num_replicas; ++r) replicas_.push_back(std::make_unique<ThreadReplica>(r, num_replicas, *rendezvous_));
}

MirroredStrategy::~MirroredStrategy() = default;

void MirroredStrategy::run_replicas(const std::function<void(int)>& fn) {
  rendezvous_->reset();
  std::vector<std::exception_ptr> errors(num_replicas_);
  std::vector<std::thread> threads;
  for (int r = 0; r < num_replicas_; ++r) {
    threads.emplace_back([&, r] {
      ReplicaContextScope scope(replicas_[r].get());
      try {
        fn(r);
      } catch (...) {
        errors[r] = std::current_exception();
        rendezvous_->abort();
      }
    });
  }
  for (std::thread& t : threads) t.join();
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

std::unique_ptr<ReplicaContext::GradientAverager> MirroredStrategy::average_gradients(const std::vector<Variable>& vars,
                                                                                      double weight, double,
                                                                                      bool) {
  return std::make_unique<PassThroughAverager>(vars.size(), weight);
}

uint64_t MirroredStrategy::shared_seed() {
  return static_cast<uint64_t>(random_uniform({1}, 0, 9007199254740992.0, kF64).item());
}

}  // namespace gradflow::strategies
