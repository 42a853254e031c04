// What the NCCL engine (between processes) and the local device group (between the GPUs of one process)
// share: the dtype and reduce-op mapping, error text, and group brackets.
#pragma once

#include <nccl.h>

#include <string>

#include "core/tensor/dtype.h"
#include "distributed/comm/communicator.h"

namespace gradflow::distributed::nccl_internal {

// ncclGetErrorString and, with a communicator, ncclGetLastError's detail.
std::string nccl_error(ncclComm_t comm, ncclResult_t result);
// NCCL's type for a dtype (bool as u8); throws for a dtype NCCL lacks.
ncclDataType_t nccl_dtype(DType dtype);
// NCCL's op for a reduction over dtype (bool: "or" is max, "and" is min).
ncclRedOp_t nccl_op(DType dtype, ReduceOp op);

// Brackets body() (which returns the first NCCL error) in a group; the group is always closed, since an
// open group would swallow every later call.
template <typename Body>
ncclResult_t group(Body&& body) {
  ncclResult_t result = ncclGroupStart();
  if (result != ncclSuccess) return result;
  result = body();
  ncclResult_t end = ncclGroupEnd();
  return result != ncclSuccess ? result : end;
}

}  // namespace gradflow::distributed::nccl_internal
