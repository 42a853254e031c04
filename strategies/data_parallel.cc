#include "strategies/data_parallel.h"

#include <algorithm>

namespace gradflow::strategies {

MultiWorkerMirroredStrategy::MultiWorkerMirroredStrategy(std::unique_ptr<distributed::Communicator> comm,
                                                         DataParallelOptions options)
    : comm_(std::move(comm)), options_(options) {
  if (!comm_) throw ValueError("MultiWorkerMirroredStrategy: needs a communicator");
  if (options_.bucket_bytes <= 0) {
    throw ValueError(str_cat("MultiWorkerMirroredStrategy: bucket_bytes must be positive, got ", options_.bucket_bytes));
  }
}

std::unique_ptr<MultiWorkerMirroredStrategy> MultiWorkerMirroredStrategy::from_environment(
    const distributed::JobCommunicatorOptions& comm_options, DataParallelOptions options) {
  absl::StatusOr<cluster::JobInfo> job = cluster::resolve_job(cluster::current_environment());
  if (!job.ok()) throw ValueError(std::string(job.status().message()));
  return std::make_unique<MultiWorkerMirroredStrategy>(distributed::communicator_for_job(*job, comm_options), options);
}

std::vector<Tensor> MultiWorkerMirroredStrategy::all_reduce_sum(const std::vector<Tensor>& tensors) {
  // Buckets in reverse order (the last layer's gradients are ready first in backward), each one coalesced
  // all-reduce; all of them in flight before the first wait.
  std::vector<std::vector<size_t>> buckets;
  int64_t bytes = options_.bucket_bytes;
  for (size_t k = tensors.size(); k-- > 0;) {
    int64_t size = tensors[k].numel() * static_cast<int64_t>(dtype_size(tensors[k].dtype()));
    if (buckets.empty() || bytes + size > options_.bucket_bytes) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(k);
    bytes += size;
  }
  std::vector<distributed::WorkPtr> works;
  for (const std::vector<size_t>& bucket : buckets) {
    std::vector<Tensor> part;
    for (size_t k : bucket) part.push_back(tensors[k]);
    works.push_back(comm_->all_reduce(std::move(part), {.async_op = buckets.size() > 1}));
  }
  std::vector<Tensor> out(tensors.size());
  for (size_t b = 0; b < buckets.size(); ++b) {
    const std::vector<Tensor>& summed = works[b]->result();
    for (size_t i = 0; i < buckets[b].size(); ++i) out[buckets[b][i]] = summed[i];
  }
  return out;
}

std::pair<std::vector<Tensor>, double> MultiWorkerMirroredStrategy::weighted_mean(const std::vector<Tensor>& grads,
                                                                                   double weight, double nominal) {
  // One flat buffer: every gradient, then the weight. Packing here (rather than in the communicator)
  // lets the average be one division over the buffer, with the results as views into it. Gradients are
  // scaled by weight / nominal (nominal is common to all replicas): 1, so no scaling pass, whenever a
  // replica contributes a full batch, which is every step but a short last one.
  if (nominal <= 0) throw ValueError(str_cat("weighted_mean: nominal weight must be positive, got ", nominal));
  double scale = weight / nominal;
  DType dtype = grads.empty() ? kF32 : grads[0].dtype();
  bool uniform = std::all_of(grads.begin(), grads.end(), [&](const Tensor& g) {
    return g.dtype() == dtype && g.device() == grads[0].device();
  });
  if (!uniform || !is_floating(dtype)) {  // mixed dtypes or devices: per-tensor (rare)
    std::vector<Tensor> scaled;
    for (const Tensor& g : grads) scaled.push_back(scale == 1.0 ? g : g * scale);
    scaled.push_back(full({1}, scale, kF64));
    std::vector<Tensor> summed = all_reduce_sum(scaled);
    double total = summed.back().item();
    summed.pop_back();
    if (total > 0) {
      for (Tensor& g : summed) g = g / total;
    }
    return {std::move(summed), total * nominal};
  }
  std::vector<Tensor> parts;
  for (const Tensor& g : grads) parts.push_back(g.reshape({-1}));
  parts.push_back(full({1}, 1.0, dtype, grads.empty() ? kCPU : grads[0].device()));
  Tensor flat = concat(parts, 0);
  if (scale != 1.0) flat = flat * scale;
  Tensor summed = all_reduce_sum({flat})[0];
  int64_t n = summed.numel();
  double total = summed.slice(0, n - 1, n).to(kF64).item();
  std::vector<Tensor> averaged;
  if (total > 0) {
    Tensor mean = summed / total;
    int64_t offset = 0;
    for (const Tensor& g : grads) {
      averaged.push_back(mean.slice(0, offset, offset + g.numel()).reshape(g.shape()));
      offset += g.numel();
    }
  }
  return {std::move(averaged), total * nominal};
}

std::vector<Tensor> MultiWorkerMirroredStrategy::reduce_gradients(const std::vector<Tensor>& grads) {
  std::vector<Tensor> summed = all_reduce_sum(grads);
  for (Tensor& g : summed) g = g / static_cast<double>(num_replicas_in_sync());
  return summed;
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
  return comm_->all_reduce({t})->result()[0].to_vector<double>();
}

uint64_t MultiWorkerMirroredStrategy::shared_seed() {
  // Drawn from replica 0's global generator, so a run seeded with set_seed() repeats exactly (and a
  // checkpoint, which saves that generator, resumes with the same shuffles).
  int64_t mine = static_cast<int64_t>(random_uniform({1}, 0, 9007199254740992.0, kF64).item());
  Tensor seed = comm_->broadcast({from_vector<int64_t>({mine}, {1})}, {.root = 0})->result()[0];
  return static_cast<uint64_t>(seed.to_vector<int64_t>()[0]);
}

}  // namespace gradflow::strategies
