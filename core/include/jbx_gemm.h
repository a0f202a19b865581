/* Single-precision matrix products for the whole core: jbx_sgemm has cblas_sgemm's meaning
 * (row-major, C = alpha op(A) op(B) + beta C) and picks its engine at run time.
 *
 * Why not always OpenBLAS: Debian 12's OpenBLAS (0.3.21) predates the newest CPUs, and on
 * such machines it is pinned to its AVX2 kernels (OPENBLAS_CORETYPE, since its own detection
 * can pick kernels that crash there), leaving half of an AVX-512 core's multiply-add width
 * unused. Where the CPU has AVX-512, a packed, cache-blocked product with an AVX-512 micro-
 * kernel (core/gemm_avx512.c) runs instead; elsewhere, and when JBX_GEMM=blas is set in the
 * environment, every product goes to cblas_sgemm. */
#ifndef JBX_GEMM_H
#define JBX_GEMM_H
#include <cblas.h>
#include <stdint.h>

void jbx_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, float alpha,
               const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* C = op(A) op(B) + bias, the row vector bias [n] added to every row in the same pass. */
void jbx_sgemm_bias(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k,
                    const float *a, int64_t lda, const float *b, int64_t ldb, const float *bias,
                    float *c, int64_t ldc);

/* "avx512" or "openblas": the engine jbx_sgemm uses in this process. */
const char *jbx_gemm_engine(void);

#endif
