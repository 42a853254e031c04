#include "distributed/comm/engine_communicator.h"

#include <algorithm>
#include <numeric>

#include "absl/cleanup/cleanup.h"
#include "core/ops/ops.h"
#include "core/tensor/creation.h"
#include "distributed/store/prefix_store.h"

namespace gradflow::distributed {
namespace {

// "[128,10] f32", or "2 tensors: [128,10] f32, [10] f32".
std::string describe(const std::vector<Tensor>& tensors) {
  std::string text = tensors.size() == 1 ? "" : str_cat(tensors.size(), " tensors: ");
  for (size_t i = 0; i < tensors.size(); ++i) {
    text += str_cat(i == 0 ? "" : ", ", shape_str(tensors[i].shape()), " ", dtype_name(tensors[i].dtype()));
  }
  return text;
}

int64_t rows(const Tensor& t) { return t.rank() == 0 ? 1 : t.dim(0); }
int64_t row_size(const Tensor& t) {
  int64_t n = 1;
  for (int i = 1; i < t.rank(); ++i) n *= t.dim(i);
  return n;
}

// Elements of each of n ranks' part of t, its axis 0 split as numpy.array_split does (the first
// rows % n ranks get a row more): reduce_scatter's parts, which all_gather_in_place gathers.
std::vector<int64_t> part_counts(const Tensor& t, int64_t n) {
  const int64_t d0 = rows(t);
  std::vector<int64_t> counts(n);
  for (int64_t r = 0; r < n; ++r) counts[r] = (d0 / n + (r < d0 % n ? 1 : 0)) * row_size(t);
  return counts;
}

// t's shape with axis 0 replaced by n (a scalar becomes [n]).
Shape with_rows(const Tensor& t, int64_t n) {
  Shape s = t.shape();
  if (s.empty()) return Shape{n};
  s[0] = n;
  return s;
}

Tensor empty_flat(int64_t n, DType dtype, Device device) { return empty(Shape{n}, dtype, device); }

// The contiguous input tensors flattened into one buffer (no copy when there is one).
Tensor pack(const std::vector<Tensor>& parts) {
  if (parts.size() == 1) return parts[0].reshape({-1});
  std::vector<Tensor> flat;
  for (const Tensor& p : parts) flat.push_back(p.reshape({-1}));
  return concat(flat, 0);
}

}  // namespace

EngineCommunicator::EngineCommunicator(std::unique_ptr<Engine> engine, CommSettings settings)
    : engine_(std::move(engine)),
      settings_(std::move(settings)) {
  const CommunicatorOptions& o = settings_.options;
  if (settings_.comm_store) user_store_ = std::make_shared<PrefixStore>("user", settings_.comm_store);
  runner_ = std::make_unique<OpRunner>(RunnerConfig{
      .rank = engine_->rank(),
      .size = engine_->size(),
      .backend = std::string(backend_name(engine_->backend())),
      .job_store = settings_.job_store,
      .comm_store = settings_.comm_store,
      .watch_for_dead_ranks = settings_.root && engine_->rank() == 0,
      .debug = o.debug,
      .heartbeat = o.heartbeat,
      .dead_after = o.dead_after,
      .inline_only = engine_->inline_only(),
      .on_failure = [engine = engine_.get()] { engine->interrupt(); },
  });
  for (size_t d = 0; d < kNumDTypes; ++d) {
    for (size_t r = 0; r < kNumReduceOps; ++r) {
      try {
        plans_[d][r] = work_out_plan("", static_cast<DType>(d), static_cast<ReduceOp>(r));
      } catch (const ValueError&) {
        // left unset: plan_reduction reports it when it is asked for
      }
    }
  }
}

EngineCommunicator::~EngineCommunicator() { runner_.reset(); }

Device EngineCommunicator::work_device(const Tensor& t) const {
  return engine_->supports_device(t.device()) ? t.device() : engine_->staging_device();
}

Tensor EngineCommunicator::staged(const Tensor& t) const { return t.to(work_device(t)).contiguous(); }

Timeout EngineCommunicator::op_timeout(const std::optional<Timeout>& timeout) const {
  return timeout.value_or(settings_.options.timeout);
}

void EngineCommunicator::check_rank(const char* what, int value) const {
  if (value < 0 || value >= size()) {
    throw ValueError(str_cat(what, " must be a rank of this communicator (0..", size() - 1, "), got ", value));
  }
}

EngineCommunicator::ReducePlan EngineCommunicator::plan_reduction(const char* op_name, DType dtype,
                                                                  ReduceOp op) const {
  const std::optional<ReducePlan>& plan = plans_[static_cast<size_t>(dtype)][static_cast<size_t>(op)];
  return plan ? *plan : work_out_plan(op_name, dtype, op);  // the second throws the error, naming op_name
}

EngineCommunicator::ReducePlan EngineCommunicator::work_out_plan(const char* op_name, DType dtype,
                                                                 ReduceOp op) const {
  if (op == ReduceOp::kAvg && !is_floating(dtype)) {
    throw ValueError(str_cat(op_name, ": avg needs a floating dtype, got ", dtype_name(dtype)));
  }
  if (dtype == kBool) {
    bool any = op == ReduceOp::kSum || op == ReduceOp::kMax;
    return {kU8, any ? ReduceOp::kMax : ReduceOp::kMin, false};
  }
  bool divide = op == ReduceOp::kAvg && !engine_->native_avg();
  ReduceOp engine_op = divide ? ReduceOp::kSum : op;
  DType wire = dtype;
  if (!engine_->supports_reduction(wire, engine_op) && is_half(dtype)) wire = kF32;
  if (!engine_->supports_reduction(wire, engine_op)) {
    throw ValueError(str_cat(op_name, ": the ", backend_name(backend()), " backend cannot reduce ",
                             dtype_name(dtype), " with ", reduce_op_name(op)));
  }
  return {wire, engine_op, divide};
}

WorkPtr EngineCommunicator::submit(const char* name, std::function<std::string()> signature, bool collective,
                                   const std::optional<Timeout>& timeout, bool async,
                                   std::function<std::vector<Tensor>(Timeout)> body) {
  return runner_->submit(OpRunner::Op{name, std::move(signature), collective, op_timeout(timeout), async, std::move(body)});
}

// Reduces same-dtype tensors packed into one buffer; returns the packed result (on root only when !all).
Tensor EngineCommunicator::reduce_packed(const std::vector<Tensor>& tensors, ReducePlan plan, ReduceOp op, int root,
                                         Timeout timeout, bool all) {
  std::vector<Tensor> parts;
  for (const Tensor& t : tensors) parts.push_back(staged(t).to(plan.wire));
  Tensor in = pack(parts).contiguous();
  Tensor out = empty_flat(in.numel(), plan.wire, in.device());
  if (all) {
    engine_->all_reduce(in.raw_data(), out.raw_data(), in.numel(), plan.wire, plan.op, timeout);
  } else {
    engine_->reduce(in.raw_data(), out.raw_data(), in.numel(), plan.wire, plan.op, root, timeout);
  }
  if (plan.divide && op == ReduceOp::kAvg) out = out / static_cast<double>(size());
  return out;
}

namespace {
// Splits a packed result back into tensors shaped and typed like `like`, on their devices.
std::vector<Tensor> unpack(const Tensor& packed, const std::vector<Tensor>& like) {
  std::vector<Tensor> out;
  int64_t offset = 0;
  for (const Tensor& t : like) {
    Tensor part = packed.slice(0, offset, offset + t.numel()).reshape(t.shape());
    out.push_back(part.to(t.dtype()).to(t.device()));
    offset += t.numel();
  }
  return out;
}

// The indices of `tensors` grouped by dtype, in order of first appearance: one engine call per group.
std::vector<std::vector<size_t>> groups_by_dtype(const std::vector<Tensor>& tensors) {
  std::vector<std::vector<size_t>> groups;
  std::vector<DType> dtypes;
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto it = std::find(dtypes.begin(), dtypes.end(), tensors[i].dtype());
    if (it == dtypes.end()) {
      dtypes.push_back(tensors[i].dtype());
      groups.push_back({i});
    } else {
      groups[it - dtypes.begin()].push_back(i);
    }
  }
  return groups;
}

std::vector<Tensor> pick(const std::vector<Tensor>& tensors, const std::vector<size_t>& indices) {
  std::vector<Tensor> out;
  for (size_t i : indices) out.push_back(tensors[i]);
  return out;
}

void check_list(const char* op, const std::vector<Tensor>& tensors) {
  if (tensors.empty()) throw ValueError(str_cat(op, ": needs at least one tensor"));
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!tensors[i].defined()) throw ValueError(str_cat(op, ": tensor ", i, " is undefined"));
  }
}
}  // namespace

std::string EngineCommunicator::all_reduce_signature(const Tensor& t, ReduceOp op) {
  return str_cat("all_reduce(", describe({t}), ", ", reduce_op_name(op), ")");
}

bool EngineCommunicator::engine_takes(const Tensor& t, const ReducePlan& plan) const {
  return plan.wire == t.dtype() && engine_->supports_device(t.device()) && t.is_contiguous();
}

void EngineCommunicator::reduce_in_place(const Tensor& t, const ReducePlan& plan, ReduceOp op, Timeout engine_timeout) {
  void* data = t.raw_data();
  engine_->all_reduce(data, data, t.numel(), t.dtype(), plan.op, engine_timeout);
  if (plan.divide && op == ReduceOp::kAvg) copy_into(t, t / static_cast<double>(size()));
}

// The state of a single-tensor all-reduce, in its Work (one allocation, or none when the spare is
// reused); the op's lambdas capture only a pointer to it.
struct EngineCommunicator::AllReduceWork final : WorkImpl {
  AllReduceWork(Timeout timeout, EngineCommunicator* self) : WorkImpl(timeout, true), self(self) {}
  using WorkImpl::reset;
  EngineCommunicator* self;
  Tensor t;                // the input, never changed while the op runs: what signature describes
  std::vector<Tensor> io;  // the caller's vector, holding the input; becomes the result
  ReducePlan plan{};
  ReduceOp op = ReduceOp::kSum;
  bool in_place = false;
};

namespace {
// Up to this size an all-reduce reuses the communicator's spare Work, which keeps its last input and
// result alive until the next op: small enough not to matter, and where a Work's cost shows.
constexpr int64_t kSpareWorkMaxBytes = 64 << 10;
}  // namespace

WorkPtr EngineCommunicator::submit_all_reduce(std::vector<Tensor> io, ReducePlan plan, const AllReduceOptions& options) {
  const Tensor& t = io[0];
  Timeout timeout = op_timeout(options.timeout);
  std::shared_ptr<AllReduceWork> work;
  // Reused only when no caller still holds it; the flag keeps two threads from reusing it at once.
  bool reusing = t.numel() * static_cast<int64_t>(dtype_size(t.dtype())) <= kSpareWorkMaxBytes &&
                 !spare_in_use_.exchange(true, std::memory_order_acquire);
  absl::Cleanup release_spare = [&] {
    if (reusing) spare_in_use_.store(false, std::memory_order_release);
  };
  if (reusing && spare_all_reduce_ && spare_all_reduce_.use_count() == 1) {
    // use_count() reads the count relaxed; the fence orders this reuse after the last owner's release
    // (its reference count decrement) and so after everything it did with the Work.
    std::atomic_thread_fence(std::memory_order_acquire);
    spare_all_reduce_->reset(timeout);
    work = spare_all_reduce_;
  } else if (reusing) {
    spare_all_reduce_ = std::make_shared<AllReduceWork>(timeout, this);
    work = spare_all_reduce_;
  } else {
    work = std::make_shared<AllReduceWork>(timeout, this);
  }
  AllReduceWork* w = work.get();
  w->t = t;
  w->io = std::move(io);
  w->plan = plan;
  w->op = options.op;
  w->in_place = options.in_place;
  return runner_->submit(
      OpRunner::Op{
          .name = "all_reduce",
          .signature = [w] { return all_reduce_signature(w->t, w->op); },
          .timeout = timeout,
          .async = options.async_op,
          .body =
              [w](Timeout engine_timeout) {
                Tensor& t = w->io[0];
                if (w->in_place) {
                  w->self->reduce_in_place(t, w->plan, w->op, engine_timeout);
                } else {
                  Tensor out = empty(t.shape(), t.dtype(), t.device());
                  w->self->engine_->all_reduce(t.raw_data(), out.raw_data(), t.numel(), t.dtype(), w->plan.op,
                                               engine_timeout);
                  if (w->plan.divide && w->op == ReduceOp::kAvg) out = out / static_cast<double>(w->self->size());
                  t = std::move(out);
                }
                return std::move(w->io);
              }},
      std::move(work));
}

WorkPtr EngineCommunicator::all_reduce(std::vector<Tensor> tensors, const AllReduceOptions& options) {
  check_list("all_reduce", tensors);
  if (tensors.size() == 1) {
    // The common case, kept free of packing and view ops: a small all-reduce should cost what the
    // engine's does.
    const Tensor& t = tensors[0];
    ReducePlan plan = plan_reduction("all_reduce", t.dtype(), options.op);
    if (engine_takes(t, plan)) return submit_all_reduce(std::move(tensors), plan, options);
  }
  auto signature = [=] { return str_cat("all_reduce(", describe(tensors), ", ", reduce_op_name(options.op), ")"); };
  return submit_reduction("all_reduce", std::move(signature), std::move(tensors), options.op, std::nullopt,
                          options.timeout, options.async_op, options.in_place);
}

void EngineCommunicator::all_reduce_in_place(const Tensor& t, ReduceOp op, std::optional<Timeout> timeout) {
  if (!t.defined()) throw ValueError("all_reduce: tensor 0 is undefined");
  const ReducePlan plan = plan_reduction("all_reduce", t.dtype(), op);
  if (engine_takes(t, plan)) {
    runner_->run_now(
        "all_reduce", op_timeout(timeout), [&] { return all_reduce_signature(t, op); },
        [&](Timeout engine_timeout) { reduce_in_place(t, plan, op, engine_timeout); });
    return;
  }
  Communicator::all_reduce_in_place(t, op, timeout);
}

namespace {

// Lets a Storage own memory that something else frees: the shared pointer the engine handed out is
// released, with this object, when the storage goes.
class KeepAlive final : public Allocator {
 public:
  explicit KeepAlive(std::shared_ptr<void> memory) : memory_(std::move(memory)) {}
  void* allocate(size_t) override { throw ValueError("KeepAlive only releases memory"); }
  void deallocate(void*, size_t) override { delete this; }

 private:
  std::shared_ptr<void> memory_;
};

}  // namespace

Tensor EngineCommunicator::allocate_for_all_reduce(Shape shape, DType dtype, Device device) {
  const size_t bytes = static_cast<size_t>(numel(shape)) * dtype_size(dtype);
  std::shared_ptr<void> memory;
  if (device.is_cpu()) {
    runner_->run_now(
        "allocate_for_all_reduce", op_timeout(std::nullopt),
        [&] { return str_cat("allocate_for_all_reduce(", shape_str(shape), " ", dtype_name(dtype), ")"); },
        [&](Timeout engine_timeout) { memory = engine_->allocate_symmetric(bytes, engine_timeout); });
  }
  if (!memory) return zeros(std::move(shape), dtype, device);
  void* data = memory.get();
  auto storage = std::make_shared<Storage>(data, bytes, kCPU, new KeepAlive(std::move(memory)));
  Strides strides = contiguous_strides(shape);
  return Tensor(std::make_shared<TensorImpl>(std::move(storage), 0, std::move(shape), std::move(strides), dtype));
}

void EngineCommunicator::all_gather_in_place(const Tensor& t) {
  if (!t.defined() || t.rank() == 0) throw ValueError("all_gather_in_place: needs a tensor with an axis");
  if (engine_->supports_device(t.device()) && t.is_contiguous()) {
    const std::vector<int64_t> counts = part_counts(t, size());
    bool done = false;
    runner_->run_now(
        "all_gather_in_place", op_timeout(std::nullopt),
        [&] { return str_cat("all_gather_in_place(", describe({t}), ")"); },
        [&](Timeout engine_timeout) { done = engine_->all_gather_in_place(t.raw_data(), counts, t.dtype(), engine_timeout); });
    if (done) return;
  }
  Communicator::all_gather_in_place(t);
}

Tensor EngineCommunicator::allocate_shared(int64_t bytes) {
  if (bytes < 0) throw ValueError(str_cat("allocate_shared: bytes must not be negative, got ", bytes));
  std::shared_ptr<void> memory;
  runner_->run_now(
      "allocate_shared", op_timeout(std::nullopt), [&] { return str_cat("allocate_shared(", bytes, " bytes)"); },
      [&](Timeout engine_timeout) { memory = engine_->allocate_shared(static_cast<size_t>(bytes), engine_timeout); });
  if (!memory) return Tensor();
  void* data = memory.get();
  auto storage = std::make_shared<Storage>(data, static_cast<size_t>(bytes), kCPU, new KeepAlive(std::move(memory)));
  return Tensor(std::make_shared<TensorImpl>(std::move(storage), 0, Shape{bytes}, Strides{1}, kU8));
}

WorkPtr EngineCommunicator::reduce(std::vector<Tensor> tensors, const ReduceOptions& options) {
  check_list("reduce", tensors);
  check_rank("reduce: root", options.root);
  auto signature = [=] {
    return str_cat("reduce(", describe(tensors), ", ", reduce_op_name(options.op), ", root ", options.root, ")");
  };
  return submit_reduction("reduce", std::move(signature), std::move(tensors), options.op, options.root,
                          options.timeout, options.async_op, false);
}

// all_reduce (root unset) and reduce: one engine call per dtype group of the packed tensors; the result
// is the reduced tensors, or on a reduce's non-root ranks the inputs.
WorkPtr EngineCommunicator::submit_reduction(const char* name, std::function<std::string()> signature,
                                             std::vector<Tensor> tensors, ReduceOp op, std::optional<int> root,
                                             const std::optional<Timeout>& timeout, bool async, bool in_place) {
  std::vector<std::vector<size_t>> groups = groups_by_dtype(tensors);
  std::vector<ReducePlan> plans;
  for (const auto& g : groups) plans.push_back(plan_reduction(name, tensors[g[0]].dtype(), op));
  return submit(name, std::move(signature), true, timeout, async,
                [this, tensors = std::move(tensors), groups, plans, op, root, in_place](Timeout engine_timeout) {
                  std::vector<Tensor> result = tensors;
                  for (size_t g = 0; g < groups.size(); ++g) {
                    std::vector<Tensor> group = pick(tensors, groups[g]);
                    Tensor packed = reduce_packed(group, plans[g], op, root.value_or(0), engine_timeout, !root);
                    if (root && rank() != *root) continue;
                    std::vector<Tensor> parts = unpack(packed, group);
                    for (size_t i = 0; i < parts.size(); ++i) result[groups[g][i]] = parts[i];
                  }
                  if (!in_place) return result;
                  for (size_t i = 0; i < tensors.size(); ++i) copy_into(tensors[i], result[i]);
                  return tensors;
                });
}

WorkPtr EngineCommunicator::broadcast(std::vector<Tensor> tensors, const BroadcastOptions& options) {
  check_list("broadcast", tensors);
  check_rank("broadcast: root", options.root);
  std::vector<std::vector<size_t>> groups = groups_by_dtype(tensors);
  auto signature = [=] { return str_cat("broadcast(", describe(tensors), ", root ", options.root, ")"); };
  return submit("broadcast", signature, true, options.timeout, options.async_op,
                [this, tensors = std::move(tensors), groups, root = options.root](Timeout timeout) {
                  std::vector<Tensor> result = tensors;
                  for (const auto& g : groups) {
                    std::vector<Tensor> group = pick(tensors, g);
                    Device device = work_device(group[0]);
                    DType dtype = group[0].dtype();
                    Tensor buffer;
                    if (rank() == root) {
                      std::vector<Tensor> parts;
                      for (const Tensor& t : group) parts.push_back(t.to(device).contiguous());
                      buffer = pack(parts).contiguous();  // only read by the engine on the root
                    } else {
                      int64_t n = 0;
                      for (const Tensor& t : group) n += t.numel();
                      buffer = empty_flat(n, dtype, device);
                    }
                    engine_->broadcast(buffer.raw_data(), buffer.numel(), dtype, root, timeout);
                    if (rank() == root) continue;
                    std::vector<Tensor> parts = unpack(buffer, group);
                    for (size_t i = 0; i < parts.size(); ++i) result[g[i]] = parts[i];
                  }
                  return result;
                });
}

std::vector<int64_t> EngineCommunicator::exchange_counts(int64_t mine, Device device, Timeout timeout,
                                                         bool all_to_all_splits, const std::vector<int64_t>& splits) {
  std::vector<int64_t> ones(size(), 1);
  Tensor in = (all_to_all_splits ? from_vector<int64_t>(splits) : from_vector<int64_t>({mine})).to(device);
  Tensor out = empty_flat(size(), kI64, device);
  if (all_to_all_splits) {
    engine_->all_to_all(in.raw_data(), ones, out.raw_data(), ones, kI64, timeout);
  } else {
    engine_->all_gather(in.raw_data(), out.raw_data(), ones, kI64, timeout);
  }
  return out.to(kCPU).to_vector<int64_t>();
}

WorkPtr EngineCommunicator::all_gather(const Tensor& input, const AllGatherOptions& options) {
  check_list("all_gather", {input});
  auto signature = [=] { return str_cat("all_gather(", describe({input}), ")"); };
  return submit("all_gather", signature, true, options.timeout, options.async_op, [this, input](Timeout timeout) {
    Tensor in = staged(input);
    Tensor out = empty_flat(in.numel() * size(), in.dtype(), in.device());
    engine_->all_gather(in.raw_data(), out.raw_data(), std::vector<int64_t>(size(), in.numel()), in.dtype(), timeout);
    return std::vector<Tensor>{out.reshape(with_rows(input, rows(input) * size())).to(input.device())};
  });
}

WorkPtr EngineCommunicator::all_gather_v(const Tensor& input, const AllGatherOptions& options) {
  check_list("all_gather_v", {input});
  if (input.rank() == 0) throw ValueError("all_gather_v: needs a tensor with at least one axis, got a scalar");
  auto signature = [=] { return str_cat("all_gather_v(", dtype_name(input.dtype()), " rows of ",
                                  shape_str(with_rows(input, 1)), ")"); };
  return submit("all_gather_v", signature, true, options.timeout, options.async_op, [this, input](Timeout timeout) {
    Tensor in = staged(input);
    std::vector<int64_t> counts = exchange_counts(rows(input), in.device(), timeout, false, {});
    int64_t total_rows = engine_internal::total(counts);
    for (int64_t& c : counts) c *= row_size(input);
    Tensor out = empty_flat(engine_internal::total(counts), in.dtype(), in.device());
    engine_->all_gather(in.raw_data(), out.raw_data(), counts, in.dtype(), timeout);
    return std::vector<Tensor>{out.reshape(with_rows(input, total_rows)).to(input.device())};
  });
}

WorkPtr EngineCommunicator::reduce_scatter(const Tensor& input, const ReduceScatterOptions& options) {
  check_list("reduce_scatter", {input});
  if (input.rank() == 0) throw ValueError("reduce_scatter: needs a tensor with at least one axis, got a scalar");
  ReducePlan plan = plan_reduction("reduce_scatter", input.dtype(), options.op);
  auto signature = [=] { return str_cat("reduce_scatter(", describe({input}), ", ", reduce_op_name(options.op), ")"); };
  return submit("reduce_scatter", signature, true, options.timeout, options.async_op,
                [this, input, plan, op = options.op](Timeout timeout) {
                  Tensor in = staged(input).to(plan.wire);
                  int64_t n = size(), d0 = rows(input);
                  std::vector<int64_t> counts = part_counts(input, n);
                  Tensor out = empty_flat(counts[rank()], plan.wire, in.device());
                  engine_->reduce_scatter(in.raw_data(), out.raw_data(), counts, plan.wire, plan.op, timeout);
                  if (plan.divide && op == ReduceOp::kAvg) out = out / static_cast<double>(n);
                  int64_t my_rows = d0 / n + (rank() < d0 % n ? 1 : 0);
                  return std::vector<Tensor>{
                      out.reshape(with_rows(input, my_rows)).to(input.dtype()).to(input.device())};
                });
}

WorkPtr EngineCommunicator::all_to_all(const Tensor& input, const AllToAllOptions& options) {
  check_list("all_to_all", {input});
  if (input.rank() == 0) throw ValueError("all_to_all: needs a tensor with at least one axis, got a scalar");
  std::vector<int64_t> splits = options.input_splits;
  bool exchange = !splits.empty();
  if (splits.empty()) {
    if (rows(input) % size() != 0) {
      throw ValueError(str_cat("all_to_all: axis 0 (", rows(input), ") does not divide into ", size(),
                               " equal parts; pass input_splits"));
    }
    splits.assign(size(), rows(input) / size());
  } else if (static_cast<int>(splits.size()) != size() || engine_internal::total(splits) != rows(input) ||
             std::any_of(splits.begin(), splits.end(), [](int64_t s) { return s < 0; })) {
    throw ValueError(str_cat("all_to_all: input_splits must hold ", size(), " non-negative row counts summing to ",
                             rows(input), ", got ", splits.size(), " summing to ", engine_internal::total(splits)));
  }
  auto signature = [=] { return str_cat("all_to_all(", dtype_name(input.dtype()), " rows of ",
                                  shape_str(with_rows(input, 1)), ")"); };
  return submit("all_to_all", signature, true, options.timeout, options.async_op,
                [this, input, splits, exchange](Timeout timeout) {
                  Tensor in = staged(input);
                  std::vector<int64_t> recv_rows =
                      exchange ? exchange_counts(0, in.device(), timeout, true, splits) : splits;
                  std::vector<int64_t> send = splits, recv = recv_rows;
                  for (int64_t& c : send) c *= row_size(input);
                  for (int64_t& c : recv) c *= row_size(input);
                  Tensor out = empty_flat(engine_internal::total(recv), in.dtype(), in.device());
                  engine_->all_to_all(in.raw_data(), send, out.raw_data(), recv, in.dtype(), timeout);
                  return std::vector<Tensor>{
                      out.reshape(with_rows(input, engine_internal::total(recv_rows))).to(input.device())};
                });
}

WorkPtr EngineCommunicator::barrier(const BarrierOptions& options) {
  return submit("barrier", [] { return std::string("barrier()"); }, true, options.timeout, options.async_op, [this](Timeout timeout) {
    engine_->barrier(timeout);
    return std::vector<Tensor>{};
  });
}

WorkPtr EngineCommunicator::send(const Tensor& tensor, int dst, const PointToPointOptions& options) {
  check_list("send", {tensor});
  check_rank("send: dst", dst);
  if (dst == rank()) throw ValueError(str_cat("send: rank ", dst, " cannot send to itself"));
  auto signature = [=] { return str_cat("send(", describe({tensor}), " to rank ", dst, ", tag ", options.tag, ")"); };
  return submit("send", signature, false, options.timeout, options.async_op,
                [this, tensor, dst, tag = options.tag](Timeout timeout) {
                  Tensor in = staged(tensor);
                  engine_->send(in.raw_data(), in.numel(), in.dtype(), dst, tag, timeout);
                  return std::vector<Tensor>{};
                });
}

WorkPtr EngineCommunicator::recv(Shape shape, DType dtype, int src, const PointToPointOptions& options) {
  check_rank("recv: src", src);
  if (src == rank()) throw ValueError(str_cat("recv: rank ", src, " cannot receive from itself"));
  auto signature = [=] { return str_cat("recv(", shape_str(shape), " ", dtype_name(dtype), " from rank ", src, ", tag ", options.tag, ")"); };
  return submit("recv", signature, false, options.timeout, options.async_op,
                [this, shape, dtype, src, tag = options.tag](Timeout timeout) {
                  Tensor out = empty(shape, dtype, engine_->staging_device());
                  engine_->recv(out.raw_data(), out.numel(), dtype, src, tag, timeout);
                  return std::vector<Tensor>{out};
                });
}

std::unique_ptr<Communicator> EngineCommunicator::split(int color, int key) {
  Tensor mine = from_vector<int64_t>({color, key}, Shape{1, 2});
  std::vector<int64_t> all = all_gather(mine, {})->result()[0].to(kCPU).to_vector<int64_t>();
  std::vector<int> members;
  for (int r = 0; r < size(); ++r) {
    if (color >= 0 && all[2 * r] == color) members.push_back(r);
  }
  std::stable_sort(members.begin(), members.end(), [&](int a, int b) { return all[2 * a + 1] < all[2 * b + 1]; });
  int new_rank = static_cast<int>(std::find(members.begin(), members.end(), rank()) - members.begin());
  int index = ++splits_;  // the same on every rank: split() is collective and ordered
  CommSettings sub = settings_;
  sub.root = false;
  if (settings_.comm_store) {
    sub.comm_store = std::make_shared<PrefixStore>(str_cat("split", index, "/color", color), settings_.comm_store);
  }
  auto engine = std::make_shared<std::unique_ptr<Engine>>();
  std::shared_ptr<Store> engine_store =
      sub.comm_store ? std::make_shared<PrefixStore>("engine", sub.comm_store) : nullptr;
  submit("split", [] { return std::string("split()"); }, true, std::nullopt, false, [&, engine](Timeout) {
    *engine = engine_->split(color, members, new_rank, engine_store);
    return std::vector<Tensor>{};
  })->wait();
  if (color < 0) return nullptr;
  return std::make_unique<EngineCommunicator>(std::move(*engine), std::move(sub));
}

void EngineCommunicator::abort(const std::string& reason) {
  runner_->abort(CollectiveFailure::kAborted, str_cat("aborted by rank ", rank(), ": ", reason), true);
}

}  // namespace gradflow::distributed
