// Reductions of 16-bit floats (f16, bf16) for engines that have none (MPI, Gloo): each element is widened
// to float, combined, and rounded back to nearest even, as NCCL does on the GPU. This is what lets
// gradients travel compressed (strategies' DataParallelOptions::compression): half the bytes on the wire.
// Vectorised with F16C where the build targets it (-march=native on x86).
#pragma once

#include <cstddef>

#include "core/tensor/dtype.h"
#include "distributed/comm/communicator.h"

namespace gradflow::distributed::half_reduce {

// out[i] = a[i] op b[i] for n elements (out may alias a or b); the signature of Gloo's reduce functions.
using Fn = void (*)(void* out, const void* a, const void* b, size_t n);

// nullptr unless dtype is f16 or bf16 and op is sum, prod, min or max.
Fn function_for(DType dtype, ReduceOp op);

}  // namespace gradflow::distributed::half_reduce
