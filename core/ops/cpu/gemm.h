// Row-major GEMM for the CPU kernels: C = op(A) * op(B) + beta * C, op = transpose when asked.
// f32 goes to oneDNN's dnnl_sgemm, which picks its kernels from the CPU's instruction set (OpenBLAS 0.3.21
// falls back to its generic Prescott kernels on CPU models it does not know: 5x slower here); f64 goes to
// OpenBLAS. Both run on the same OpenMP thread pool. Empty m, n or k are handled here, not by the library.
#pragma once

#include <cstdint>

namespace gradflow::cpu {

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
          int64_t ldb, float beta, float* c, int64_t ldc);
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

}  // namespace gradflow::cpu
