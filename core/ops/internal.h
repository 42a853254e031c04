// Internal to core/ops: the registration entry points of each op group and a few kernel-level helpers
// that do not go through run_op (they are never recorded on a tape).
#pragma once

#include "core/ops/op.h"
#include "core/ops/ops.h"  // copy_into

namespace gradflow {

// Called once, in this order, by OpRegistry::global(): definitions, then CPU kernels, then CUDA kernels.
void register_all_ops(OpRegistry& registry);

void register_elementwise_ops(OpRegistry& registry);
void register_reduce_ops(OpRegistry& registry);
void register_view_ops(OpRegistry& registry);
void register_matmul_ops(OpRegistry& registry);
void register_nn_ops(OpRegistry& registry);
void register_index_ops(OpRegistry& registry);
void register_conv_ops(OpRegistry& registry);
void register_copy_ops(OpRegistry& registry);

void register_elementwise_cpu_kernels(OpRegistry& registry);
void register_reduce_cpu_kernels(OpRegistry& registry);
void register_matmul_cpu_kernels(OpRegistry& registry);
void register_nn_cpu_kernels(OpRegistry& registry);
void register_index_cpu_kernels(OpRegistry& registry);
void register_conv_cpu_kernels(OpRegistry& registry);
void register_copy_cpu_kernels(OpRegistry& registry);

#if GRADFLOW_WITH_CUDA
void register_cuda_kernels(OpRegistry& registry);
#endif

// dtype conversion and a row-major copy on t's device, without a tape record.
Tensor cast_kernel(const Tensor& t, DType dtype);
Tensor contiguous_kernel(const Tensor& t);

}  // namespace gradflow
