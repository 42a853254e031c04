// Elementwise reductions of host buffers for engines that combine data themselves (shm/): acc[i] = acc[i]
// op other[i], for every dtype and op an engine reduces natively (f32, f64, i32, i64 and u8, and f16 and
// bf16 through float, rounded back to nearest even as half_reduce.h does). Integers wrap on overflow, as
// MPI's do in practice.
#pragma once

#include "distributed/comm/half_reduce.h"

namespace gradflow::distributed {

// out[i] = a[i] op b[i] (out may alias a or b); nullptr for kAvg, bool and the dtypes above are not.
half_reduce::Fn reduce_function(DType dtype, ReduceOp op);

}  // namespace gradflow::distributed
