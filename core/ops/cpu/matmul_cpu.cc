// CPU matmul through cpu::gemm (oneDNN for f32, OpenBLAS for f64), one call per batch element. Transposed views are
// passed to BLAS as transposes (no copy); other non-row-major layouts are copied first.
#include "core/ops/cpu/gemm.h"
#include "core/ops/gemm_operand.h"
#include "core/ops/internal.h"
#include "core/tensor/creation.h"

namespace gradflow {
namespace {

TensorList matmul_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  bool ta = attrs.get<bool>("transpose_a"), tb = attrs.get<bool>("transpose_b");
  Tensor out = allocate_output(metas[0]);  // a gradient bucket's slot, when backward asks (OutputInto)
  const Shape& os = out.shape();
  int r = out.rank();
  int64_t m = os[r - 2], n = os[r - 1];
  int64_t k = in[0].dim(ta ? -2 : -1);
  if (out.numel() == 0) return {out};
  GemmOperand a = as_gemm_operand(in[0], ta), b = as_gemm_operand(in[1], tb);
  if (k == 0) {
    copy_into(out, zeros(os, out.dtype()));
    return {out};
  }
  Shape batch(os.begin(), os.end() - 2);
  Strides sa = broadcast_strides(a.t, os), sb = broadcast_strides(b.t, os);
  int64_t batches = numel(batch);
  visit_float("matmul", out.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = static_cast<const T*>(a.t.raw_data());
    const T* pb = static_cast<const T*>(b.t.raw_data());
    T* pc = static_cast<T*>(out.raw_data());
    for (int64_t i = 0; i < batches; ++i) {
      int64_t oa = 0, ob = 0, rem = i;
      for (int d = static_cast<int>(batch.size()) - 1; d >= 0; --d) {
        int64_t idx = rem % batch[d];
        rem /= batch[d];
        oa += idx * sa[d];
        ob += idx * sb[d];
      }
      cpu::gemm(a.transposed, b.transposed, m, n, k, pa + oa, a.ld, pb + ob, b.ld, T(0), pc + i * m * n, n);
    }
  });
  return {out};
}

}  // namespace

void register_matmul_cpu_kernels(OpRegistry& r) { r.set_kernel("matmul", DeviceType::kCPU, matmul_kernel); }

}  // namespace gradflow
