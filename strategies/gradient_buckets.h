// Bucketed gradient averaging for data-parallel strategies, overlapped with backward.
//
// The variables are laid out in buckets of at most bucket_bytes, in reverse order (backward finishes the
// last layer's gradients first), each bucket one flat buffer per dtype and device that lives as long as
// the layout (no per-step allocation). Backward writes a gradient straight into its slot where it can (a
// matmul's, GradientTape::Hooks::destination); as backward makes a gradient final, the averager copies
// any other (scaled by weight / nominal) into its slot; when a bucket is full its in-place all-reduce starts on the
// communicator's progress thread while backward goes on. The last bucket (the first layers' gradients,
// the last ones backward makes) runs in finish() on the calling thread: nothing is left to overlap it. Buckets always start in bucket order, the
// same on every rank whatever order the gradients come in, so ranks never pair different buckets.
// The last bucket also carries each replica's weight and a "had a gradient" flag per variable: a
// variable no replica had a gradient for comes back undefined on every replica. With compression, f32
// and f64 gradients travel as f16 or bf16 (converted after scaling, summed in that dtype by the engine,
// widened back before the division), and the metadata in a small f64 bucket of its own.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "core/gradflow.h"
#include "core/nn/replica_context.h"
#include "core/optim/optimizer.h"
#include "distributed/comm/communicator.h"

namespace gradflow::strategies {

// A split update's plan for one layout (DataParallelOptions::shard_update, strategies/shared_variables.h):
// this rank's part of each bucket's gradients (what reduce_scatter leaves it: numpy.array_split of the
// bucket's gradient elements), and the parts of the variables in it, as the optimizer updates them.
struct SplitUpdate {
  struct BucketPart {
    int64_t gradients = 0;  // the bucket's gradient elements (the metadata after them is all-reduced)
    int64_t lo = 0, hi = 0;  // this rank's part of them
  };
  struct VariablePart {
    size_t var;
    size_t bucket;
    int64_t at;  // where its elements start in this rank's reduced part of the bucket
    int64_t size;
  };
  std::vector<BucketPart> buckets;
  std::vector<VariablePart> parts;
  // Per bucket: this rank's copy of its variables (SplitUpdateMemory), which the ranks gather their
  // updated parts into.
  std::vector<Tensor> weights;
  std::vector<optimizers::Optimizer::UpdatePart> updates;  // parts[k]'s elements, as the optimizer updates them
};

class BucketLayout {
 public:
  // One slot per tensor of `like` (its shape, dtype and device; names for errors). With `wire` set (f16
  // or bf16), f32 and f64 gradients travel in that dtype: half the bytes, rounded on the way.
  // `ranks` slots in the metadata carry each rank's compute time of the step (for load balancing).
  // With `comm`, the buffers come from its allocate_for_all_reduce (collective: every rank builds the
  // same layout at the same point), so that reducing them copies nothing where ranks share memory.
  BucketLayout(const std::vector<Tensor>& like, const std::vector<std::string>& names, int64_t bucket_bytes,
               std::optional<DType> wire = std::nullopt, int ranks = 0,
               distributed::Communicator* comm = nullptr);
  // Whether this layout fits tensors like these (same shapes, dtypes and devices, in the same order).
  bool matches(const std::vector<Tensor>& like) const;
  size_t num_buckets() const { return buckets_.size(); }
  // While set, averagers over this layout split the update (finish_and_update) and refuse finish().
  void set_split(std::shared_ptr<const SplitUpdate> split) { split_ = std::move(split); }
  // For a split: per bucket, its gradient elements and the variables' offsets in it.
  int64_t gradient_elements(size_t bucket) const;
  const std::vector<size_t>& bucket_variables(size_t bucket) const { return buckets_[bucket].vars; }
  int64_t offset_of(size_t var) const { return slots_[var].offset; }
  size_t bucket_of(size_t var) const { return slots_[var].bucket; }
  const Tensor& buffer(size_t bucket) const { return buckets_[bucket].buffer; }

 private:
  friend class BucketedAverager;
  struct Slot {
    size_t bucket;
    int64_t offset;  // elements into the bucket's buffer
    Shape shape;
    Strides strides;  // contiguous: views of the bucket are made directly (make_view)
    DType dtype;
    Device device;
    std::string name;  // the variable's, for errors
  };
  struct Bucket {
    std::vector<size_t> vars;
    Tensor buffer;             // gradients, then (last bucket) the metadata
    int64_t meta_offset = -1;  // where the metadata starts, in the bucket that holds it
  };
  std::vector<Slot> slots_;
  std::vector<Bucket> buckets_;
  int ranks_ = 0;      // timing slots at the end of the metadata
  bool busy_ = false;  // an averager is using the buffers
  std::shared_ptr<const SplitUpdate> split_;
};

class BucketedAverager : public ReplicaContext::GradientAverager {
 public:
  // overlap false: every bucket starts in finish() (for comparison; the result is the same).
  // weighted_loss: gradients arrive already scaled by weight / nominal (ReplicaContext::average_gradients).
  BucketedAverager(distributed::Communicator& comm, std::shared_ptr<BucketLayout> layout, double weight,
                   double nominal, bool overlap, bool weighted_loss = false);
  // Waits for buckets still in flight (their buffers are reused by the next step).
  ~BucketedAverager() override;

  void ready(size_t i, const Tensor& grad) override;
  // The variable's slot in its bucket, where no scaling or conversion is due on the way in.
  Tensor destination(size_t i) override;
  void set_compute_seconds(double seconds) override { compute_seconds_ = seconds; }
  // Called once the all-reduce is done with every rank's compute seconds (the layout's timing slots).
  void on_timings(std::function<void(const std::vector<double>&)> fn) { on_timings_ = std::move(fn); }
  std::pair<std::vector<Tensor>, double> finish() override;
  // Views of the summed buckets themselves (f16/bf16 ones widened), no division pass.
  Sums finish_unscaled() override;
  // With the layout split (DataParallelOptions::shard_update): each bucket's gradients reduce-scattered,
  // the metadata all-reduced, this rank's part of every variable updated (its slots shared with the other
  // ranks), then every rank's updated part written into the others' copies of the variables
  // (SplitUpdateMemory: they live in symmetric memory, laid out like the buckets).
  std::optional<bool> finish_and_update(optimizers::Optimizer& optimizer, const std::vector<Variable>& vars) override;

 private:
  // Waits for the all-reduces; the summed buckets (per bucket, as f32 where they were 16-bit) and the
  // total weight from the metadata, or nullopt when it is 0 (no replica had rows).
  struct Reduced {
    std::vector<Tensor> buckets;
    std::vector<double> meta;  // total weight (scaled), then per variable: how many replicas had a gradient
  };
  std::optional<Reduced> reduce();
  // The variables' gradients, cut out of per-bucket tensors laid out like the buckets.
  std::vector<Tensor> cut(const std::vector<Tensor>& buckets, const std::vector<double>& meta) const;
  void start_ready_buckets(bool all);
  // async: on the progress thread; otherwise blocking (Communicator::all_reduce_in_place: inline when the
  // communicator is idle; finish() waits anyway).
  void start(size_t bucket, bool async);
  // vars[i]'s slot in `buffer` (its bucket's buffer, or a tensor laid out like it).
  Tensor slot_view(size_t i, const Tensor& buffer) const;
  Tensor slot_view(size_t i) const;
  // The metadata in the bucket that holds it: written before its all-reduce, read after.
  void write_meta(BucketLayout::Bucket& bucket, const std::vector<double>& values);
  std::vector<double> read_meta(const BucketLayout::Bucket& bucket) const;

  distributed::Communicator& comm_;
  std::shared_ptr<BucketLayout> layout_;
  double scale_;    // weight / nominal
  bool prescaled_;  // the gradients already carry scale_
  double nominal_;
  bool overlap_;
  double compute_seconds_ = 0;
  std::function<void(const std::vector<double>&)> on_timings_;
  std::vector<char> ready_;    // per variable
  std::vector<double> used_;   // per variable: 1 when this replica had a gradient
  std::vector<int> missing_;   // per bucket: variables not ready yet
  size_t next_bucket_ = 0;     // buckets start in order
  std::vector<distributed::WorkPtr> works_;
  std::vector<distributed::WorkPtr> scattered_;  // split update: per bucket, its reduce_scatter
  bool finished_ = false;
};

}  // namespace gradflow::strategies
