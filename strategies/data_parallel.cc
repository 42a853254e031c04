#include "strategies/data_parallel.h"

#include <algorithm>
#include <cstring>

#include "distributed/store/store_exchange.h"
#include "strategies/load_balance.h"
#include "strategies/split_update_memory.h"

namespace gradflow::strategies {

MultiWorkerMirroredStrategy::MultiWorkerMirroredStrategy(std::unique_ptr<distributed::Communicator> comm,
                                                         DataParallelOptions options)
    : comm_(std::move(comm)), options_(options) {
  if (!comm_) throw ValueError("MultiWorkerMirroredStrategy: needs a communicator");
  if (options_.bucket_bytes <= 0) {
    throw ValueError(str_cat("MultiWorkerMirroredStrategy: bucket_bytes must be positive, got ", options_.bucket_bytes));
  }
}

void MultiWorkerMirroredStrategy::set_options(DataParallelOptions options) {
  if (options.bucket_bytes <= 0) {
    throw ValueError(str_cat("MultiWorkerMirroredStrategy: bucket_bytes must be positive, got ", options.bucket_bytes));
  }
  options_ = options;
  layout_.reset();
}

std::unique_ptr<MultiWorkerMirroredStrategy> MultiWorkerMirroredStrategy::from_environment(
    const distributed::JobCommunicatorOptions& comm_options, DataParallelOptions options) {
  absl::StatusOr<cluster::JobInfo> job = cluster::resolve_job(cluster::current_environment());
  if (!job.ok()) throw ValueError(std::string(job.status().message()));
  if (job->debug_collectives && options.verify_replicas_every == 0) options.verify_replicas_every = 100;
  return std::make_unique<MultiWorkerMirroredStrategy>(distributed::communicator_for_job(*job, comm_options), options);
}

std::unique_ptr<ReplicaContext::GradientAverager> MultiWorkerMirroredStrategy::averager_for(
    const std::vector<Tensor>& like, const std::vector<std::string>& names, double weight, double nominal,
    bool weighted_loss) {
  if (!layout_ || !layout_->matches(like)) {
    if (sharing_) {
      throw StateError("MultiWorkerMirroredStrategy: the trainable variables changed during a fit that shares them "
                       "among the ranks (DataParallelOptions::shard_update); freeze or add layers between fits");
    }
    std::optional<DType> wire;
    if (options_.compression == GradientCompression::kFloat16) wire = kF16;
    if (options_.compression == GradientCompression::kBFloat16) wire = kBF16;
    layout_ = std::make_shared<BucketLayout>(like, names, options_.bucket_bytes, wire,
                                             options_.balance_load ? comm_->size() : 0, comm_.get());
  }
  auto averager = std::make_unique<BucketedAverager>(*comm_, layout_, weight, nominal, options_.overlap, weighted_loss);
  if (options_.balance_load) {
    averager->on_timings([this](const std::vector<double>& seconds) {
      // The rows split_rows gave this step; none when this step's batches were not split by it (fit on
      // a Dataset, a custom loop): then nothing is learnt.
      if (step_rows_.size() == seconds.size()) speeds_ = updated_speeds(speeds_, step_rows_, seconds);
      step_rows_.clear();
    });
  }
  return averager;
}

std::shared_ptr<void> MultiWorkerMirroredStrategy::share_for_update(const std::vector<Variable>& vars,
                                                                   optimizers::Optimizer& optimizer) {
  // Decided alike on every rank: the same options, optimizer and model everywhere.
  if (!options_.shard_update || comm_->size() < 2 || vars.empty() || !optimizer.splits_elementwise() ||
      options_.compression != GradientCompression::kNone || sharing_) {
    return nullptr;
  }
  std::vector<Tensor> like;
  std::vector<std::string> names;
  for (const Variable& v : vars) {
    const Tensor& value = v.value_unwatched();
    if (!value.device().is_cpu() || !value.is_contiguous() || (value.dtype() != kF32 && value.dtype() != kF64)) {
      return nullptr;
    }
    like.push_back(value);
    names.push_back(v.name());
  }
  averager_for(like, names, 1.0, 1.0);  // lays the buckets out (collective) and releases them at once
  std::shared_ptr<BucketLayout> layout = layout_;
  std::shared_ptr<SplitUpdateMemory> memory = SplitUpdateMemory::make(*comm_, vars, optimizer, *layout);
  if (!memory) return nullptr;
  // This rank's part of each bucket's gradients, as reduce_scatter splits them, and of each variable.
  auto split = std::make_shared<SplitUpdate>();
  for (size_t b = 0; b < layout->num_buckets(); ++b) {
    const int64_t n = layout->gradient_elements(b);
    const std::vector<int64_t> bounds = array_split_bounds(n, comm_->size());
    const int64_t lo = bounds[comm_->rank()], hi = bounds[comm_->rank() + 1];
    split->buckets.push_back({n, lo, hi});
    for (size_t var : layout->bucket_variables(b)) {
      const int64_t start = layout->offset_of(var), end = start + vars[var].value_unwatched().numel();
      const int64_t a = std::max(lo, start), z = std::min(hi, end);
      if (a >= z) continue;
      split->parts.push_back({var, b, a - lo, z - a});
      split->updates.push_back(optimizer.update_part(vars[var], a - start, z - start));
    }
  }
  split->weights = memory->weights();
  layout->set_split(split);
  sharing_ = true;
  ++split_fits_;
  return std::shared_ptr<void>(memory.get(), [this, layout, memory](void*) {
    layout->set_split(nullptr);
    sharing_ = false;
  });
}

std::vector<int64_t> MultiWorkerMirroredStrategy::split_rows(int64_t rows) {
  std::vector<int64_t> bounds =
      options_.balance_load && static_cast<int>(speeds_.size()) == comm_->size() ? balanced_bounds(rows, speeds_)
                                                                                 : ReplicaContext::split_rows(rows);
  step_rows_.resize(bounds.size() - 1);
  for (size_t r = 0; r + 1 < bounds.size(); ++r) step_rows_[r] = bounds[r + 1] - bounds[r];
  return bounds;
}

std::unique_ptr<ReplicaContext::GradientAverager> MultiWorkerMirroredStrategy::average_gradients(
    const std::vector<Variable>& vars, double weight, double nominal, bool weighted_loss) {
  if (options_.verify_replicas_every > 0 && steps_++ % options_.verify_replicas_every == 0) verify_replicas(vars);
  std::vector<Tensor> like;
  std::vector<std::string> names;
  for (const Variable& v : vars) {
    like.push_back(v.value_unwatched());
    names.push_back(v.name());
  }
  return averager_for(like, names, weight, nominal, weighted_loss);
}

std::vector<Tensor> MultiWorkerMirroredStrategy::gradient(GradientTape& tape, const Tensor& target,
                                                          const std::vector<Variable>& vars) {
  std::unique_ptr<GradientAverager> averager = average_gradients(vars, 1.0, 1.0);
  tape.gradient(target, std::vector<GradSource>(vars.begin(), vars.end()),
                {.on_ready = [&](size_t i, const Tensor& g) { averager->ready(i, g); },
                 .destination = [&](size_t i) { return averager->destination(i); }});
  return averager->finish().first;
}

std::vector<Tensor> MultiWorkerMirroredStrategy::reduce_gradients(const std::vector<Tensor>& grads) {
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) {
      throw ValueError(str_cat("reduce_gradients: gradient ", i, " is undefined (its shape is unknown here); "
                               "use Strategy::gradient(tape, target, vars), which handles variables without one"));
    }
  }
  std::unique_ptr<GradientAverager> averager = averager_for(grads, {}, 1.0, 1.0);
  for (size_t i = grads.size(); i-- > 0;) averager->ready(i, grads[i]);
  return averager->finish().first;
}

void MultiWorkerMirroredStrategy::broadcast_variables(const std::vector<Variable>& vars) {
  if (vars.empty()) return;
  std::vector<Tensor> values;
  for (const Variable& v : vars) values.push_back(v.value_unwatched());
  std::vector<Tensor> synced = comm_->broadcast(values, {.root = 0})->result();
  for (size_t i = 0; i < vars.size(); ++i) {
    Variable v = vars[i];
    v.assign(synced[i]);
  }
}

std::vector<double> MultiWorkerMirroredStrategy::sum(const std::vector<double>& values) {
  if (values.empty()) return {};
  Tensor t = from_vector<double>(values, {static_cast<int64_t>(values.size())});
  comm_->all_reduce_in_place(t);
  return t.to_vector<double>();
}

namespace {
// FNV-1a over a variable's bytes: equal values give equal hashes on every replica.
int64_t fingerprint(const Tensor& value) {
  Tensor host = value.to(kCPU).contiguous();
  const auto* bytes = static_cast<const uint8_t*>(host.raw_data());
  uint64_t h = 1469598103934665603ull;
  for (int64_t i = 0, n = host.numel() * static_cast<int64_t>(dtype_size(host.dtype())); i < n; ++i) {
    h = (h ^ bytes[i]) * 1099511628211ull;
  }
  return static_cast<int64_t>(h);
}
}  // namespace

void MultiWorkerMirroredStrategy::verify_replicas(const std::vector<Variable>& vars) {
  std::vector<int64_t> mine;
  for (const Variable& v : vars) mine.push_back(fingerprint(v.value_unwatched()));
  if (mine.empty()) return;
  const int64_t n = static_cast<int64_t>(mine.size());
  std::vector<int64_t> all =
      comm_->all_gather(from_vector<int64_t>(mine, {1, n}))->result()[0].reshape({-1}).to_vector<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    std::string differ;
    for (int r = 1; r < comm_->size(); ++r) {
      if (all[r * n + i] != all[i]) differ += str_cat(differ.empty() ? "" : ", ", r);
    }
    if (!differ.empty()) {
      throw StateError(str_cat("MultiWorkerMirroredStrategy: replicas diverged before step ", steps_ - 1,
                               ": variable '", vars[i].name(), "' on rank(s) ", differ,
                               " differs from rank 0's (every replica must apply the identical update)"));
    }
  }
}

Tensor MultiWorkerMirroredStrategy::all_reduce_sum(const Tensor& t) { return comm_->all_reduce({t})->result()[0]; }

uint64_t MultiWorkerMirroredStrategy::shared_seed() {
  // Drawn from replica 0's global generator, so a run seeded with set_seed() repeats exactly.
  int64_t mine = static_cast<int64_t>(random_uniform({1}, 0, 9007199254740992.0, kF64).item());
  Tensor seed = comm_->broadcast({from_vector<int64_t>({mine}, {1})}, {.root = 0})->result()[0];
  return static_cast<uint64_t>(seed.to_vector<int64_t>()[0]);
}

namespace {

// Sums through the job's store: every replica's values (as raw doubles) exchanged, added in rank order
// (the same result on every replica).
class StoreSums : public ReplicaContext::BackgroundSums {
 public:
  StoreSums(std::shared_ptr<distributed::Store> store, std::function<std::string()> job_failure, std::string channel,
            int rank, int size)
      : store_(std::move(store)), job_failure_(std::move(job_failure)), channel_(std::move(channel)), rank_(rank),
        size_(size) {}

  std::vector<double> sum(const std::vector<double>& values) override {
    std::string mine(values.size() * sizeof(double), '\0');
    if (!values.empty()) std::memcpy(mine.data(), values.data(), mine.size());
    std::string tag = str_cat(channel_, "/", calls_++);
    absl::StatusOr<std::vector<std::string>> all =
        distributed::exchange_through_store(*store_, tag, rank_, size_, mine, store_->timeout(), job_failure_);
    if (!all.ok()) throw Error(str_cat("replica ", rank_, ": background sum: ", all.status().message()));
    std::vector<double> total(values.size(), 0.0);
    for (int r = 0; r < size_; ++r) {
      const std::string& theirs = (*all)[static_cast<size_t>(r)];
      if (theirs.size() != mine.size()) {
        throw Error(str_cat("replica ", rank_, ": background sum ", tag, ": replica ", r, " sent ",
                            theirs.size() / sizeof(double), " values, this one ", values.size()));
      }
      for (size_t i = 0; i < values.size(); ++i) {
        double v;
        std::memcpy(&v, theirs.data() + i * sizeof(double), sizeof(double));
        total[i] += v;
      }
    }
    return total;
  }

 private:
  std::shared_ptr<distributed::Store> store_;
  std::function<std::string()> job_failure_;  // the communicator's failure: a rank died, the job aborts
  std::string channel_;
  int rank_, size_;
  int64_t calls_ = 0;
};

}  // namespace

std::unique_ptr<ReplicaContext::BackgroundSums> MultiWorkerMirroredStrategy::background_sums() {
  std::shared_ptr<distributed::Store> store = comm_->store();
  if (!store) return nullptr;
  return std::make_unique<StoreSums>(std::move(store), comm_->failure_probe(), str_cat("background", ++background_channels_),
                                     comm_->rank(), comm_->size());
}

}  // namespace gradflow::strategies
