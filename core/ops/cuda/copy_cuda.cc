// CUDA cast_copy, contiguous_copy and copy_into: one strided conversion kernel (copy_kernels.cu).
#include "core/ops/cuda/copy_kernels.h"
#include "core/ops/cuda/cuda_kernels.h"
#include "core/tensor/cuda/launch.h"

namespace gradflow::cuda {
namespace {

// dst[i] = convert(src[i]) over dst's shape; src may broadcast into it.
void strided_convert(std::string_view op, const Tensor& dst, const Tensor& src) {
  auto ix = strided_index<2>(op, dst.shape(), {dst.strides(), broadcast_strides(src, dst.shape())});
  KernelScope scope(dst.device());
  check(launch_convert(scope.stream(), scalar_type(dst.dtype()), dst.raw_data(), scalar_type(src.dtype()),
                       src.raw_data(), ix, dst.numel()),
        op);
}

}  // namespace

TensorList cast_copy_kernel(const TensorList& in, const Attrs&, const MetaList& metas) {
  Tensor out = empty(metas[0]);
  strided_convert("cast_copy", out, in[0]);
  return {out};
}

TensorList contiguous_copy_kernel(const TensorList& in, const Attrs&, const MetaList& metas) {
  Tensor out = empty(metas[0]);
  strided_convert("contiguous_copy", out, in[0]);
  return {out};
}

TensorList copy_into_kernel(const TensorList& in, const Attrs&, const MetaList&) {
  strided_convert("copy_into", in[0], in[1]);
  return {};
}

}  // namespace gradflow::cuda
