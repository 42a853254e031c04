// CUDA matmul through cuBLAS. Operands are passed as they lie in memory: a transposed view becomes a
// cuBLAS transpose (no copy), as in cpu/matmul_cpu.cc; other layouts are copied first. Batches whose
// offsets are a fixed stride apart (including broadcast, stride 0) run as one strided-batched call,
// others as one call per batch. f16/bf16 use cublasGemmStridedBatchedEx with float accumulation.
//
// cuBLAS is column-major: the row-major product C[m,n] = A[m,k] B[k,n] is computed as the
// column-major C^T[n,m] = B^T[n,k] A^T[k,m], i.e. with the operands swapped.
#include <cublas_v2.h>

#include <climits>
#include <optional>
#include <vector>

#include "core/ops/cuda/cuda_kernels.h"
#include "core/ops/cuda/handle_pool.h"
#include "core/ops/gemm_operand.h"
#include "core/ops/internal.h"
#include "core/tensor/cuda/fill.h"
#include "core/tensor/cuda/launch.h"

namespace gradflow::cuda {
namespace {

void check_cublas(cublasStatus_t status, std::string_view what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw DeviceError(str_cat(what, ": ", cublasGetStatusName(status), ": ", cublasGetStatusString(status)));
  }
}

// A new cuBLAS handle bound to the device's stream.
cublasHandle_t create_cublas(int device) {
  cudaStream_t s = stream(device);
  DeviceGuard guard(device);
  cublasHandle_t h = nullptr;
  check_cublas(cublasCreate(&h), str_cat("cublasCreate on cuda:", device));
  check_cublas(cublasSetStream(h, s), "cublasSetStream");
  return h;
}

// The stride between consecutive batches (row-major over `batch`) when batch i starts at i * stride.
std::optional<int64_t> linear_batch_stride(const Shape& batch, const Strides& strides) {
  int64_t stride = 0, span = 1;
  bool found = false;
  for (int d = static_cast<int>(batch.size()) - 1; d >= 0; --d) {
    if (batch[d] == 1) continue;
    if (!found) {
      stride = strides[d];
      found = true;
    } else if (strides[d] != stride * span) {
      return std::nullopt;
    }
    span *= batch[d];
  }
  return stride;
}

// One (strided-batched) column-major GEMM: C = op(A) op(B), C is m x n with ldc, `count` batches.
struct Gemm {
  bool trans_a, trans_b;
  int m, n, k;
  const char* a;
  int lda;
  long long stride_a;
  const char* b;
  int ldb;
  long long stride_b;
  char* c;
  int ldc;
  long long stride_c;
  int count;
};

void run_gemm(cublasHandle_t h, DType dtype, const Gemm& g) {
  cublasOperation_t ta = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasStatus_t status;
  if (dtype == kF32) {
    const float alpha = 1, beta = 0;
    status = cublasSgemmStridedBatched(h, ta, tb, g.m, g.n, g.k, &alpha, reinterpret_cast<const float*>(g.a), g.lda,
                                       g.stride_a, reinterpret_cast<const float*>(g.b), g.ldb, g.stride_b, &beta,
                                       reinterpret_cast<float*>(g.c), g.ldc, g.stride_c, g.count);
  } else if (dtype == kF64) {
    const double alpha = 1, beta = 0;
    status = cublasDgemmStridedBatched(h, ta, tb, g.m, g.n, g.k, &alpha, reinterpret_cast<const double*>(g.a), g.lda,
                                       g.stride_a, reinterpret_cast<const double*>(g.b), g.ldb, g.stride_b, &beta,
                                       reinterpret_cast<double*>(g.c), g.ldc, g.stride_c, g.count);
  } else {
    const float alpha = 1, beta = 0;
    cudaDataType_t type = dtype == kF16 ? CUDA_R_16F : CUDA_R_16BF;
    status = cublasGemmStridedBatchedEx(h, ta, tb, g.m, g.n, g.k, &alpha, g.a, type, g.lda, g.stride_a, g.b, type,
                                        g.ldb, g.stride_b, &beta, g.c, type, g.ldc, g.stride_c, g.count,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  }
  check_cublas(status, str_cat("matmul (cuBLAS ", dtype_name(dtype), " GEMM ", g.m, "x", g.n, "x", g.k, ")"));
}

int as_int(int64_t v, std::string_view what) {
  if (v > INT_MAX) throw ValueError(str_cat("matmul: ", what, " ", v, " exceeds what cuBLAS takes (", INT_MAX, ")"));
  return static_cast<int>(v);
}

}  // namespace

TensorList matmul_kernel(const TensorList& in, const Attrs& attrs, const MetaList& metas) {
  bool ta = attrs.get<bool>("transpose_a"), tb = attrs.get<bool>("transpose_b");
  Tensor out = allocate_output(metas[0]);  // a gradient bucket's slot, when backward asks (OutputInto)
  const Shape& os = out.shape();
  int r = out.rank();
  int64_t m = os[r - 2], n = os[r - 1];
  int64_t k = in[0].dim(ta ? -2 : -1);
  if (out.numel() == 0) return {out};
  if (k == 0) {
    fill(out, 0.0);
    return {out};
  }
  if (out.dtype() != kF32 && out.dtype() != kF64 && !is_half(out.dtype()))
    throw_unsupported_dtype("matmul", out.dtype());
  GemmOperand a = as_gemm_operand(in[0], ta), b = as_gemm_operand(in[1], tb);
  Shape batch(os.begin(), os.end() - 2);
  Strides sa = broadcast_strides(a.t, os), sb = broadcast_strides(b.t, os);
  int64_t batches = numel(batch);
  size_t elem = dtype_size(out.dtype());
  // Swapped operands (see the top of the file): cuBLAS's A is our b, its B our a.
  Gemm g{.trans_a = b.transposed,
         .trans_b = a.transposed,
         .m = as_int(n, "dimension"),
         .n = as_int(m, "dimension"),
         .k = as_int(k, "dimension"),
         .a = static_cast<const char*>(b.t.raw_data()),
         .lda = as_int(b.ld, "stride"),
         .stride_a = 0,
         .b = static_cast<const char*>(a.t.raw_data()),
         .ldb = as_int(a.ld, "stride"),
         .stride_b = 0,
         .c = static_cast<char*>(out.raw_data()),
         .ldc = as_int(n, "dimension"),
         .stride_c = m * n,
         .count = 1};
  KernelScope scope(out.device());
  cublasHandle_t h = pooled_handle<cublasHandle_t, create_cublas>(out.device().index);
  std::optional<int64_t> stride_a = linear_batch_stride(batch, sa), stride_b = linear_batch_stride(batch, sb);
  if (stride_a && stride_b) {
    g.stride_a = *stride_b;
    g.stride_b = *stride_a;
    g.count = as_int(batches, "batch count");
    run_gemm(h, out.dtype(), g);
    return {out};
  }
  const char* a0 = g.b;
  const char* b0 = g.a;
  char* c0 = g.c;
  for (int64_t i = 0; i < batches; ++i) {
    int64_t oa = 0, ob = 0, rem = i;
    for (int d = static_cast<int>(batch.size()) - 1; d >= 0; --d) {
      int64_t idx = rem % batch[d];
      rem /= batch[d];
      oa += idx * sa[d];
      ob += idx * sb[d];
    }
    g.a = b0 + ob * elem;
    g.b = a0 + oa * elem;
    g.c = c0 + i * m * n * elem;
    run_gemm(h, out.dtype(), g);
  }
  return {out};
}

}  // namespace gradflow::cuda
