#include "distributed/nccl/nccl_common.h"

#include "core/tensor/error.h"

namespace gradflow::distributed::nccl_internal {

std::string nccl_error(ncclComm_t comm, ncclResult_t result) {
  return str_cat(ncclGetErrorString(result), " (", ncclGetLastError(comm), ")");
}

ncclDataType_t nccl_dtype(DType dtype) {
  switch (dtype) {
    case kF32: return ncclFloat32;
    case kF64: return ncclFloat64;
    case kF16: return ncclFloat16;
    case kBF16: return ncclBfloat16;
    case kI32: return ncclInt32;
    case kI64: return ncclInt64;
    case kU8: return ncclUint8;
    case kBool: return ncclUint8;
  }
  throw_unsupported_dtype("nccl", dtype);
}

ncclRedOp_t nccl_op(DType dtype, ReduceOp op) {
  // Bools travel as u8 0/1: "or" is max and "and" is min, where a sum could leave 2 (or wrap to 0).
  if (dtype == kBool) return op == ReduceOp::kSum || op == ReduceOp::kMax ? ncclMax : ncclMin;
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kAvg: return ncclAvg;
    case ReduceOp::kMin: return ncclMin;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kProd: return ncclProd;
  }
  throw ValueError(str_cat("nccl: unknown reduce op ", static_cast<int>(op)));
}

}  // namespace gradflow::distributed::nccl_internal
