/* The blocking of jbx_sgemm's packed product (core/gemm.c) and its micro-kernel
 * (core/gemm_avx512.c), shared by the two files only.
 *
 * A micro-kernel call adds op(A)[MR rows, kc] op(B)[kc, NR cols] into a tile of C: A comes
 * packed as kc columns of MR values, B as kc rows of NR values `bstride` apart (NR when
 * packed, ldb when B is read in place). Block sizes: a packed B panel (kc x NR, 48 KB)
 * stays in L1 while the MR-row panels of A (MC x KC, 210 KB) stream from L2; the packed
 * B block (KC x NC, 4.5 MB) sits in L3. */
#ifndef JBX_GEMM_KERNEL_H
#define JBX_GEMM_KERNEL_H
#include <stdint.h>

enum { GEMM_MR = 14, GEMM_NR = 32, GEMM_KC = 384, GEMM_MC = 140, GEMM_NC = 3072 };

/* Products of few rows (M <= 16: the sampler's batches) read B in place. They use a tile of
 * 8 rows, so 16 rows are two full tiles rather than 14 + 2, and go down B KC_DIRECT rows
 * at a time: the weights then stream from memory as that many sequential rows, not as
 * hundreds of 128-byte pieces each on its own page. */
enum { GEMM_MR_SMALL = 8, GEMM_KC_DIRECT = 32 };

/* C[mr, nr] = beta C + A_panel B_panel (+ bias[nr] on every row when bias is not NULL),
 * with mr <= MR and nr <= GEMM_NR valid rows and columns; beta 0 never reads C. B's rows
 * and the bias are read with masks, so an unpacked B may end at column nr. */
typedef void gemm_tile_fn(int64_t kc, const float *ap, const float *bp, int64_t bstride, float *c,
                          int64_t ldc, int mr, int nr, float beta, const float *bias);
gemm_tile_fn jbx_gemm_tile_avx512;       /* MR = GEMM_MR */
gemm_tile_fn jbx_gemm_tile_avx512_small; /* MR = GEMM_MR_SMALL */

#endif
