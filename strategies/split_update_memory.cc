#include "strategies/split_update_memory.h"

#include <cstring>

namespace gradflow::strategies {
namespace {

constexpr int64_t kAlign = 64;  // a cache line: no two slots share one

int64_t aligned(int64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

int64_t bytes_of(const Tensor& t) { return t.numel() * static_cast<int64_t>(dtype_size(t.dtype())); }

bool movable(const Tensor& t) {
  return t.device().is_cpu() && t.is_contiguous() && (t.dtype() == kF32 || t.dtype() == kF64);
}

// Points t's TensorImpl (and so every handle to it) at `storage` from byte `at`, which already holds t's
// values.
void point_at(const Tensor& t, const std::shared_ptr<Storage>& storage, int64_t at) {
  TensorImpl& impl = *t.impl_ptr();
  impl.storage = storage;
  impl.offset = at / static_cast<int64_t>(dtype_size(t.dtype()));
}

// The same after copying t's values there.
void repoint(const Tensor& t, const std::shared_ptr<Storage>& storage, int64_t at) {
  std::memcpy(static_cast<char*>(storage->data()) + at, t.raw_data(), static_cast<size_t>(bytes_of(t)));
  point_at(t, storage, at);
}

}  // namespace

std::unique_ptr<SplitUpdateMemory> SplitUpdateMemory::make(distributed::Communicator& comm,
                                                           const std::vector<Variable>& vars,
                                                           optimizers::Optimizer& optimizer, const BucketLayout& layout) {
  std::vector<Tensor> slots;
  for (const Variable& var : vars) {
    if (!movable(var.value_unwatched())) return nullptr;  // the same answer on every rank: the same model
    for (const Variable& slot : optimizer.slots(var)) slots.push_back(slot.value_unwatched());
  }
  int64_t total = 0;
  for (const Tensor& t : slots) {
    if (!movable(t)) return nullptr;
    total += aligned(bytes_of(t));
  }
  std::unique_ptr<SplitUpdateMemory> out(new SplitUpdateMemory());
  // The slots: one copy, which rank 0 fills while the others wait (they hold the same values).
  if (!slots.empty()) {
    Tensor shared = comm.allocate_shared(total);
    if (!shared.defined()) return nullptr;
    int64_t at = 0;
    for (const Tensor& t : slots) {
      if (comm.rank() == 0) {
        std::memcpy(static_cast<char*>(shared.raw_data()) + at, t.raw_data(), static_cast<size_t>(bytes_of(t)));
      }
      at += aligned(bytes_of(t));
    }
    comm.barrier()->wait();
    at = 0;
    for (const Tensor& t : slots) {
      point_at(t, shared.storage(), at);
      at += aligned(bytes_of(t));
    }
    out->moved_ = slots;
  }
  // The variables: this rank's copy, in buckets.
  for (size_t b = 0; b < layout.num_buckets(); ++b) {
    const Tensor& bucket = layout.buffer(b);
    out->weights_.push_back(comm.allocate_for_all_reduce({layout.gradient_elements(b)}, bucket.dtype(), bucket.device()));
  }
  for (size_t i = 0; i < vars.size(); ++i) {
    const Tensor& value = vars[i].value_unwatched();
    const Tensor& weights = out->weights_[layout.bucket_of(i)];
    repoint(value, weights.storage(), (weights.offset() + layout.offset_of(i)) * static_cast<int64_t>(dtype_size(value.dtype())));
    out->moved_.push_back(value);
  }
  return out;
}

SplitUpdateMemory::~SplitUpdateMemory() {
  for (const Tensor& t : moved_) repoint(t, Storage::allocate(static_cast<size_t>(bytes_of(t)), kCPU), 0);
}

}  // namespace gradflow::strategies
