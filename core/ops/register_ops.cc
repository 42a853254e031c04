#include "core/ops/internal.h"

namespace gradflow {

void register_all_ops(OpRegistry& registry) {
  register_copy_ops(registry);
  register_view_ops(registry);
  register_elementwise_ops(registry);
  register_reduce_ops(registry);
  register_matmul_ops(registry);
  register_nn_ops(registry);
  register_index_ops(registry);
  register_conv_ops(registry);

  register_copy_cpu_kernels(registry);
  register_elementwise_cpu_kernels(registry);
  register_reduce_cpu_kernels(registry);
  register_matmul_cpu_kernels(registry);
  register_nn_cpu_kernels(registry);
  register_index_cpu_kernels(registry);
  register_conv_cpu_kernels(registry);

#if GRADFLOW_WITH_CUDA
  register_cuda_kernels(registry);
#endif
}

}  // namespace gradflow
