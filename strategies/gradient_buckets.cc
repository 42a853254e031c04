#include "strategies/gradient_buckets.h"

#include <algorithm>

#include "core/trace/trace.h"

namespace gradflow::strategies {
namespace {

bool carries_meta(DType dtype) { return dtype == kF32 || dtype == kF64; }

}  // namespace

BucketLayout::BucketLayout(const std::vector<Tensor>& like, const std::vector<std::string>& names,
                           int64_t bucket_bytes, std::optional<DType> wire, int ranks,
                           distributed::Communicator* comm)
    : ranks_(ranks) {
  if (wire && !is_half(*wire)) {
    throw ValueError(str_cat("gradient buckets: compression must be to f16 or bf16, got ", dtype_name(*wire)));
  }
  if (bucket_bytes <= 0) throw ValueError(str_cat("gradient buckets: bucket_bytes must be positive, got ", bucket_bytes));
  slots_.resize(like.size());
  std::vector<int64_t> elements;  // per bucket
  std::vector<DType> dtypes;
  std::vector<Device> devices;
  int64_t bytes = 0;
  for (size_t k = like.size(); k-- > 0;) {
    const Tensor& v = like[k];
    const DType travels = wire && (v.dtype() == kF32 || v.dtype() == kF64) ? *wire : v.dtype();
    int64_t size = v.numel() * static_cast<int64_t>(dtype_size(travels));
    bool fits = !buckets_.empty() && dtypes.back() == travels && devices.back() == v.device() &&
                bytes + size <= bucket_bytes;
    if (!fits) {
      buckets_.emplace_back();
      elements.push_back(0);
      dtypes.push_back(travels);
      devices.push_back(v.device());
      bytes = 0;
    }
    slots_[k] = {buckets_.size() - 1, elements.back(), v.shape(), contiguous_strides(v.shape()), v.dtype(), v.device(),
                 k < names.size() ? names[k] : str_cat("tensor ", k)};
    buckets_.back().vars.push_back(k);
    elements.back() += v.numel();
    bytes += size;
  }
  // The metadata (weight, one flag per variable, one compute time per rank) rides in the last bucket
  // when its dtype holds it exactly enough, else in a bucket of its own.
  const int64_t meta = 1 + static_cast<int64_t>(like.size()) + ranks;
  if (buckets_.empty() || !carries_meta(dtypes.back())) {
    buckets_.emplace_back();
    elements.push_back(0);
    dtypes.push_back(kF64);
    devices.push_back(like.empty() ? kCPU : like[0].device());
  }
  buckets_.back().meta_offset = elements.back();
  elements.back() += meta;
  for (size_t b = 0; b < buckets_.size(); ++b) {
    buckets_[b].buffer = comm ? comm->allocate_for_all_reduce({elements[b]}, dtypes[b], devices[b])
                              : zeros({elements[b]}, dtypes[b], devices[b]);
  }
}

int64_t BucketLayout::gradient_elements(size_t bucket) const {
  const Bucket& b = buckets_[bucket];
  return b.meta_offset >= 0 ? b.meta_offset : b.buffer.numel();
}

bool BucketLayout::matches(const std::vector<Tensor>& like) const {
  if (like.size() != slots_.size()) return false;
  for (size_t i = 0; i < like.size(); ++i) {
    const Slot& s = slots_[i];
    if (like[i].shape() != s.shape || like[i].dtype() != s.dtype || like[i].device() != s.device) return false;
  }
  return true;
}

BucketedAverager::BucketedAverager(distributed::Communicator& comm, std::shared_ptr<BucketLayout> layout,
                                   double weight, double nominal, bool overlap, bool weighted_loss)
    : comm_(comm), layout_(std::move(layout)), prescaled_(weighted_loss), nominal_(nominal), overlap_(overlap) {
  if (nominal <= 0) throw ValueError(str_cat("average_gradients: nominal weight must be positive, got ", nominal));
  if (weight < 0) throw ValueError(str_cat("average_gradients: weight must not be negative, got ", weight));
  if (layout_->busy_) {
    throw StateError("average_gradients: the previous step's gradients are still being averaged (call finish() first)");
  }
  layout_->busy_ = true;
  scale_ = weight / nominal;
  ready_.assign(layout_->slots_.size(), 0);
  used_.assign(layout_->slots_.size(), 0.0);
  for (const BucketLayout::Bucket& b : layout_->buckets_) missing_.push_back(static_cast<int>(b.vars.size()));
}

BucketedAverager::~BucketedAverager() {
  for (const distributed::WorkPtr& w : works_) {
    try {
      w->wait();
    } catch (const std::exception&) {
      // finish() was not reached (an exception unwinds the step); its error is the one that matters.
    }
  }
  for (const distributed::WorkPtr& w : scattered_) {
    try {
      if (w) w->wait();
    } catch (const std::exception&) {
      // finish() was not reached (an exception unwinds the step); its error is the one that matters.
    }
  }
  layout_->busy_ = false;
}

void BucketedAverager::ready(size_t i, const Tensor& grad) {
  if (finished_) throw StateError("GradientAverager.ready: called after finish()");
  if (i >= ready_.size()) throw ValueError(str_cat("GradientAverager.ready: no variable ", i, " (", ready_.size(), " variables)"));
  const BucketLayout::Slot& slot = layout_->slots_[i];
  if (ready_[i]) throw StateError(str_cat("GradientAverager.ready: the gradient of '", slot.name, "' was given twice"));
  if (grad.defined() && (grad.shape() != slot.shape || grad.dtype() != slot.dtype)) {
    throw ShapeError(str_cat("GradientAverager.ready: the gradient of '", slot.name, "' is ", shape_str(grad.shape()), " ",
                             dtype_name(grad.dtype()), ", the variable is ", shape_str(slot.shape), " ",
                             dtype_name(slot.dtype)));
  }
  Tensor dst = slot_view(i);
  const bool contributes = grad.defined() && scale_ > 0;
  const bool in_place = contributes && (scale_ == 1.0 || prescaled_) && grad.dtype() == dst.dtype() &&
                        grad.raw_data() == dst.raw_data() && grad.strides() == dst.strides();
  if (in_place) {
    used_[i] = 1.0;  // backward wrote it into its slot (destination())
  } else if (contributes) {
    used_[i] = 1.0;
    Tensor src = grad.device() == dst.device() ? grad : grad.to(dst.device());
    Tensor scaled = scale_ == 1.0 || prescaled_ ? src : src * scale_;
    copy_into(dst, scaled.dtype() == dst.dtype() ? scaled : scaled.to(dst.dtype()));
  } else {
    copy_into(dst, zeros(slot.shape, dst.dtype(), dst.device()));
  }
  ready_[i] = 1;
  --missing_[slot.bucket];
  if (overlap_) start_ready_buckets(false);
}

Tensor BucketedAverager::slot_view(size_t i, const Tensor& buffer) const {
  const BucketLayout::Slot& slot = layout_->slots_[i];
  return make_view(buffer, slot.shape, slot.strides, buffer.offset() + slot.offset);
}

Tensor BucketedAverager::slot_view(size_t i) const {
  return slot_view(i, layout_->buckets_[layout_->slots_[i].bucket].buffer);
}

// The metadata is a few numbers a step: on the CPU they are written and read in place, not through ops.
void BucketedAverager::write_meta(BucketLayout::Bucket& bucket, const std::vector<double>& values) {
  Tensor& buffer = bucket.buffer;
  if (buffer.device().is_cpu() && buffer.is_contiguous() && carries_meta(buffer.dtype())) {
    visit_float("gradient buckets", buffer.dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* meta = buffer.data<T>() + bucket.meta_offset;
      for (size_t k = 0; k < values.size(); ++k) meta[k] = static_cast<T>(values[k]);
    });
    return;
  }
  Tensor dst = buffer.slice(0, bucket.meta_offset, bucket.meta_offset + static_cast<int64_t>(values.size()));
  copy_into(dst, from_vector<double>(values).to(dst.dtype()).to(dst.device()));
}

std::vector<double> BucketedAverager::read_meta(const BucketLayout::Bucket& bucket) const {
  const Tensor& buffer = bucket.buffer;
  if (buffer.device().is_cpu() && buffer.is_contiguous() && carries_meta(buffer.dtype())) {
    std::vector<double> values(static_cast<size_t>(buffer.numel() - bucket.meta_offset));
    visit_float("gradient buckets", buffer.dtype(), [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* meta = buffer.data<T>() + bucket.meta_offset;
      for (size_t k = 0; k < values.size(); ++k) values[k] = static_cast<double>(meta[k]);
    });
    return values;
  }
  return buffer.slice(0, bucket.meta_offset, buffer.numel()).to(kF64).to(kCPU).to_vector<double>();
}

Tensor BucketedAverager::destination(size_t i) {
  if (finished_ || i >= ready_.size() || ready_[i] || scale_ <= 0 || (scale_ != 1.0 && !prescaled_)) return Tensor();
  const BucketLayout::Slot& slot = layout_->slots_[i];
  if (layout_->buckets_[slot.bucket].buffer.dtype() != slot.dtype) return Tensor();  // compressed on the wire
  return slot_view(i);
}

void BucketedAverager::start_ready_buckets(bool all) {
  // During backward the last bucket of gradients never starts: it completes with backward's very last
  // gradient, so nothing is left to overlap, and finish() runs it on this thread instead (no hand-off to
  // the progress thread, which on a machine with a core per rank also stops it competing with compute).
  // A bucket of metadata alone (with compression) comes after it and starts in finish() too.
  size_t last = missing_.size() - 1;
  while (last > 0 && layout_->buckets_[last].vars.empty()) --last;
  while (next_bucket_ < missing_.size() && (all || (next_bucket_ < last && missing_[next_bucket_] == 0))) {
    start(next_bucket_, /*async=*/next_bucket_ < last);
    ++next_bucket_;
  }
}

void BucketedAverager::start(size_t b, bool async) {
  BucketLayout::Bucket& bucket = layout_->buckets_[b];
  if (bucket.meta_offset >= 0) {
    std::vector<double> meta{scale_};
    meta.insert(meta.end(), used_.begin(), used_.end());
    for (int r = 0; r < layout_->ranks_; ++r) meta.push_back(r == comm_.rank() ? compute_seconds_ : 0.0);
    write_meta(bucket, meta);
  }
  if (const SplitUpdate* split = layout_->split_.get()) {
    // Each rank gets the sums of its part of the gradients, read in place from every rank's bucket.
    const int64_t n = split->buckets[b].gradients;
    trace::Span span("start reduce_scatter", "communication", str_cat("bucket ", b, ", ", n, " elements"));
    if (scattered_.size() <= b) scattered_.resize(b + 1);
    if (n > 0) scattered_[b] = comm_.reduce_scatter(bucket.buffer.slice(0, 0, n), {.async_op = async});
    return;
  }
  trace::Span span("start all_reduce", "communication", str_cat("bucket ", b, ", ", bucket.buffer.numel(), " elements"));
  if (async) {
    works_.push_back(comm_.all_reduce({bucket.buffer}, {.async_op = true, .in_place = true}));
  } else {
    comm_.all_reduce_in_place(bucket.buffer);
  }
}

std::optional<BucketedAverager::Reduced> BucketedAverager::reduce() {
  if (finished_) throw StateError("GradientAverager.finish: called twice");
  if (layout_->split_) {
    throw StateError("GradientAverager.finish: the variables are shared by the replicas for a split update "
                     "(DataParallelOptions::shard_update), which only finish_and_update applies");
  }
  for (size_t i = 0; i < ready_.size(); ++i) {
    if (!ready_[i]) ready(i, Tensor());  // never made ready: no gradient from this replica
  }
  finished_ = true;
  start_ready_buckets(true);
  for (const distributed::WorkPtr& w : works_) w->wait();
  const BucketLayout::Bucket& last = layout_->buckets_.back();
  Reduced r;
  r.meta = read_meta(last);
  if (r.meta[0] <= 0) return std::nullopt;  // no replica had rows: nothing was timed either
  if (on_timings_ && layout_->ranks_ > 0) {
    on_timings_(std::vector<double>(r.meta.end() - layout_->ranks_, r.meta.end()));
  }
  for (const BucketLayout::Bucket& b : layout_->buckets_) {
    r.buckets.push_back(is_half(b.buffer.dtype()) ? b.buffer.to(kF32) : b.buffer);
  }
  return r;
}

std::optional<bool> BucketedAverager::finish_and_update(optimizers::Optimizer& optimizer, const std::vector<Variable>& vars) {
  std::shared_ptr<const SplitUpdate> split = layout_->split_;
  if (!split) return std::nullopt;
  if (finished_) throw StateError("GradientAverager.finish_and_update: called twice");
  if (vars.size() != ready_.size()) {
    throw ValueError(str_cat("GradientAverager.finish_and_update: ", vars.size(), " variables for ", ready_.size(), " gradients"));
  }
  for (size_t i = 0; i < ready_.size(); ++i) {
    if (!ready_[i]) ready(i, Tensor());  // never made ready: no gradient from this replica
  }
  finished_ = true;
  start_ready_buckets(true);
  BucketLayout::Bucket& last = layout_->buckets_.back();
  std::vector<double> meta;
  {
    trace::Span span("wait for gradients", "communication");
    for (const distributed::WorkPtr& w : scattered_) {
      if (w) w->wait();
    }
    comm_.all_reduce_in_place(last.buffer.slice(0, last.meta_offset, last.buffer.numel()));
    meta = read_meta(last);
  }
  if (meta[0] <= 0) return false;  // no replica had rows: nothing to update, on every rank alike
  if (on_timings_ && layout_->ranks_ > 0) on_timings_(std::vector<double>(meta.end() - layout_->ranks_, meta.end()));
  // As apply_gradients does on the plain path, on every rank alike: no variable had a gradient anywhere.
  if (std::all_of(meta.begin() + 1, meta.begin() + 1 + static_cast<int64_t>(ready_.size()), [](double u) { return u == 0; })) {
    throw ValueError(str_cat(optimizer.name(), ".apply_gradients: no gradients provided for any variable"));
  }
  std::vector<Tensor> grads;
  for (const SplitUpdate::VariablePart& p : split->parts) {
    grads.push_back(meta[1 + p.var] == 0 ? Tensor() : scattered_[p.bucket]->result()[0].slice(0, p.at, p.at + p.size));
  }
  {
    trace::Span span("optimizer");
    optimizer.apply_gradient_parts(grads, split->updates, 1.0 / meta[0]);
  }
  trace::Span span("wait for updates", "communication");
  for (size_t b = 0; b < split->buckets.size(); ++b) {
    if (split->buckets[b].gradients > 0) comm_.all_gather_in_place(split->weights[b]);
  }
  return true;
}

std::vector<Tensor> BucketedAverager::cut(const std::vector<Tensor>& buckets, const std::vector<double>& meta) const {
  std::vector<Tensor> grads(ready_.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    if (meta[1 + i] == 0) continue;  // no replica had a gradient for it
    const BucketLayout::Slot& slot = layout_->slots_[i];
    Tensor g = slot_view(i, buckets[slot.bucket]);
    grads[i] = g.dtype() == slot.dtype ? g : g.to(slot.dtype);
  }
  return grads;
}

std::pair<std::vector<Tensor>, double> BucketedAverager::finish() {
  std::optional<Reduced> r = reduce();
  if (!r) return {{}, 0.0};
  const double total_scale = r->meta[0];
  std::vector<Tensor> means;  // per bucket: one division pass, into memory of its own (the caller keeps it)
  for (const Tensor& b : r->buckets) means.push_back(b / total_scale);
  return {cut(means, r->meta), total_scale * nominal_};
}

ReplicaContext::GradientAverager::Sums BucketedAverager::finish_unscaled() {
  std::optional<Reduced> r = reduce();
  if (!r) return {};
  const double total_scale = r->meta[0];
  return {cut(r->buckets, r->meta), total_scale * nominal_, 1.0 / total_scale};
}

}  // namespace gradflow::strategies
