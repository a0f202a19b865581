/* jbx_sgemm's micro-kernels for CPUs with AVX-512 (see gemm_kernel.h): MR rows by 32
 * columns of C held in 2 MR of the 32 vector registers while kc rank-1 updates stream
 * through. Compiled for AVX-512 whatever the build's target; gemm.c calls them only after
 * checking the CPU. */
#include "gemm_kernel.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

/* One rank-1 update of the MR x 32 tile: row p of the B panel times column p of A's. */
#define RANK1_UPDATE(B0, B1)                                                                 \
  do {                                                                                       \
    const float *a = ap + p * MR;                                                            \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                                  \
      const __m512 ai = _mm512_set1_ps(a[i]);                                                \
      lo[i] = _mm512_fmadd_ps(ai, B0, lo[i]);                                                \
      hi[i] = _mm512_fmadd_ps(ai, B1, hi[i]);                                                \
    }                                                                                        \
  } while (0)

/* The tile for a constant MR (each caller below inlines its own copy, so the accumulators
 * are registers: every index into lo/hi is a constant after unrolling). */
static inline __attribute__((always_inline)) AVX512 void tile(const int MR, int64_t kc,
                                                              const float *ap, const float *bp,
                                                              int64_t bstride, float *c,
                                                              int64_t ldc, int mr, int nr,
                                                              float beta, const float *bias) {
  const __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
  /* The sums start from what C holds (beta C, or the bias, on a product's first depth
   * block) and each element is then one chain of multiply-adds in depth order: the same
   * bits however the product is cut into blocks, threads or tiles. */
  const __m512 vb = _mm512_set1_ps(beta);
  const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
  __m512 lo[16], hi[16];
  _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {
    lo[i] = bias0, hi[i] = bias1;
    if (beta != 0.0f && i < mr) {
      lo[i] = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c + i * ldc), lo[i]);
      hi[i] = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + i * ldc + 16), hi[i]);
    }
  }
  if (nr == GEMM_NR) { /* full panels (all packed ones): plain loads */
    for (int64_t p = 0; p < kc; p++)
      RANK1_UPDATE(_mm512_loadu_ps(bp + p * bstride), _mm512_loadu_ps(bp + p * bstride + 16));
  } else {
    for (int64_t p = 0; p < kc; p++)
      RANK1_UPDATE(_mm512_maskz_loadu_ps(m0, bp + p * bstride),
                   _mm512_maskz_loadu_ps(m1, bp + p * bstride + 16));
  }
  _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {
    if (i >= mr) break;
    _mm512_mask_storeu_ps(c + i * ldc, m0, lo[i]);
    _mm512_mask_storeu_ps(c + i * ldc + 16, m1, hi[i]);
  }
}

AVX512 void jbx_gemm_tile_avx512(int64_t kc, const float *ap, const float *bp, int64_t bstride,
                                 float *c, int64_t ldc, int mr, int nr, float beta,
                                 const float *bias) {
  tile(GEMM_MR, kc, ap, bp, bstride, c, ldc, mr, nr, beta, bias);
}

AVX512 void jbx_gemm_tile_avx512_small(int64_t kc, const float *ap, const float *bp,
                                       int64_t bstride, float *c, int64_t ldc, int mr, int nr,
                                       float beta, const float *bias) {
  tile(GEMM_MR_SMALL, kc, ap, bp, bstride, c, ldc, mr, nr, beta, bias);
}
