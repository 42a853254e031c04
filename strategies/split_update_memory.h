// Where the state of a split update lives (DataParallelOptions::shard_update, ZeRO stage 1's split of
// the optimizer's work among the ranks of a host), for the length of a fit:
//   - the optimizer's slots (Adam's moments, momentum): one copy that every rank of the host maps
//     (Communicator::allocate_shared). Each rank updates only its part of them, so no slot memory moves
//     between cores, and whatever reads the whole state (a checkpoint, which replica 0 writes) sees every
//     rank's part;
//   - the trainable variables: each rank's own copy, laid out like the gradient buckets in symmetric
//     memory (Communicator::allocate_for_all_reduce), so that after the update each rank writes its part
//     straight into the others' copies (Communicator::all_gather_in_place) where the all-reduce would
//     have written summed gradients: no copies in or out.
// Each variable and slot keeps its identity (its tensor's id, every handle to it): only the memory under
// its value moves, and back into memory of its own when this ends.
#pragma once

#include <memory>
#include <vector>

#include "core/gradflow.h"
#include "distributed/comm/communicator.h"
#include "strategies/gradient_buckets.h"

namespace gradflow::strategies {

class SplitUpdateMemory {
 public:
  // Moves vars (laid out in `layout`'s buckets) and their slots in `optimizer` (built now if need be);
  // nullptr, moving nothing, where the slots cannot be shared (the ranks share no memory: several hosts,
  // shared memory off) or a variable or slot is not a contiguous f32 or f64 host tensor. Collective:
  // every rank passes the same variables, holding the same values (fit has broadcast them; slots start
  // alike).
  static std::unique_ptr<SplitUpdateMemory> make(distributed::Communicator& comm, const std::vector<Variable>& vars,
                                                 optimizers::Optimizer& optimizer, const BucketLayout& layout);
  // Every variable and slot gets memory of its own again, holding its current value. Not collective: the
  // last split step ended at a barrier, after which no rank writes another's memory.
  ~SplitUpdateMemory();
  SplitUpdateMemory(const SplitUpdateMemory&) = delete;
  SplitUpdateMemory& operator=(const SplitUpdateMemory&) = delete;

  // Per bucket: this rank's copy of the variables in it, at their gradients' offsets.
  const std::vector<Tensor>& weights() const { return weights_; }

 private:
  SplitUpdateMemory() = default;
  std::vector<Tensor> moved_;    // the values whose memory was moved (their TensorImpls now point there)
  std::vector<Tensor> weights_;
};

}  // namespace gradflow::strategies
