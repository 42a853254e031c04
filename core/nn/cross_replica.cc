// The cross_replica_sum op: registered here, next to the ReplicaContext it calls, rather than in ops/
// (which knows nothing of replicas).
#include "core/nn/replica_context.h"
#include "core/ops/op.h"
#include "core/ops/ops.h"
#include "core/tensor/creation.h"

namespace gradflow {
namespace {

MetaList infer_same(const TensorList& in, const Attrs&) { return {TensorMeta{in[0].shape(), in[0].dtype()}}; }

TensorList cross_replica_sum_kernel(const TensorList& in, const Attrs&, const MetaList&) {
  ReplicaContext* ctx = current_replica_context();
  if (ctx != nullptr && ctx->num_replicas() > 1) return {ctx->all_reduce_sum(in[0])};
  // One replica: a copy, never the input itself (tapes tell tensors apart by identity).
  Tensor out = empty(in[0].shape(), in[0].dtype(), in[0].device());
  copy_into(out, in[0]);
  return {out};
}

TensorList cross_replica_sum_grad(const GradContext& c) { return {cross_replica_sum(c.grad_outputs[0])}; }

const OpDef& cross_replica_sum_op() {
  static const OpDef& op = [] () -> const OpDef& {
    // Device independent: the context's communicator takes tensors of any device.
    OpDef def{.name = "cross_replica_sum", .infer = infer_same, .grad = cross_replica_sum_grad,
              .half_via_f32 = false, .device_independent = true};
    def.kernels[0] = cross_replica_sum_kernel;
    return OpRegistry::global().define(std::move(def));
  }();
  return op;
}

// Defined while the library loads, before any thread could be reading the registry.
[[maybe_unused]] const OpDef& registered_at_load = cross_replica_sum_op();

}  // namespace

Tensor cross_replica_sum(const Tensor& x) { return run_op1(cross_replica_sum_op(), {x}); }

}  // namespace gradflow
