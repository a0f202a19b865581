/* jbx_sgemm's micro-kernel for CPUs with AVX-512 (see gemm_kernel.h): 12 rows by 32
 * columns of C held in 24 of the 32 vector registers while kc rank-1 updates stream
 * through. Compiled for AVX-512 whatever the build's target; gemm.c calls it only after
 * checking the CPU. */
#include "gemm_kernel.h"

#include <immintrin.h>

__attribute__((target("avx512f"))) void jbx_gemm_tile_avx512(int64_t kc, const float *ap,
                                                             const float *bp, int64_t bstride,
                                                             float *c, int64_t ldc, int mr, int nr,
                                                             float beta) {
  const __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
  __m512 lo[GEMM_MR], hi[GEMM_MR];
#pragma GCC unroll 16
  for (int i = 0; i < GEMM_MR; i++) lo[i] = hi[i] = _mm512_setzero_ps();
  if (nr == GEMM_NR) { /* full panels (all packed ones): plain loads */
    for (int64_t p = 0; p < kc; p++) {
      const __m512 b0 = _mm512_loadu_ps(bp + p * bstride), b1 = _mm512_loadu_ps(bp + p * bstride + 16);
      const float *a = ap + p * GEMM_MR;
#pragma GCC unroll 16
      for (int i = 0; i < GEMM_MR; i++) {
        const __m512 ai = _mm512_set1_ps(a[i]);
        lo[i] = _mm512_fmadd_ps(ai, b0, lo[i]);
        hi[i] = _mm512_fmadd_ps(ai, b1, hi[i]);
      }
    }
  } else {
    for (int64_t p = 0; p < kc; p++) {
      const __m512 b0 = _mm512_maskz_loadu_ps(m0, bp + p * bstride);
      const __m512 b1 = _mm512_maskz_loadu_ps(m1, bp + p * bstride + 16);
      const float *a = ap + p * GEMM_MR;
#pragma GCC unroll 16
      for (int i = 0; i < GEMM_MR; i++) {
        const __m512 ai = _mm512_set1_ps(a[i]);
        lo[i] = _mm512_fmadd_ps(ai, b0, lo[i]);
        hi[i] = _mm512_fmadd_ps(ai, b1, hi[i]);
      }
    }
  }
  const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < GEMM_MR; i++) { /* constant indices keep the tile in registers */
    if (i >= mr) break;
    float *ci = c + i * ldc;
    if (beta != 0.0f) {
      lo[i] = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), lo[i]);
      hi[i] = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), hi[i]);
    }
    _mm512_mask_storeu_ps(ci, m0, lo[i]);
    _mm512_mask_storeu_ps(ci + 16, m1, hi[i]);
  }
}
