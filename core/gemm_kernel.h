/* The blocking of jbx_sgemm's packed product (core/gemm.c) and its micro-kernel
 * (core/gemm_avx512.c), shared by the two files only.
 *
 * A micro-kernel call adds op(A)[MR rows, kc] op(B)[kc, NR cols] into a tile of C: A comes
 * packed as kc columns of MR values, B as kc rows of NR values `bstride` apart (NR when
 * packed, ldb when B is read in place). Block sizes: a packed B panel (kc x NR, 32 KB)
 * stays in L1 while the MR-row panels of A (MC x KC, 144 KB) stream from L2; the packed
 * B block (KC x NC, 3 MB) sits in L3. */
#ifndef JBX_GEMM_KERNEL_H
#define JBX_GEMM_KERNEL_H
#include <stdint.h>

enum { GEMM_MR = 14, GEMM_NR = 32, GEMM_KC = 384, GEMM_MC = 140, GEMM_NC = 3072 };

/* C[mr, nr] = beta C + A_panel B_panel, with mr <= GEMM_MR and nr <= GEMM_NR valid rows and
 * columns; beta 0 never reads C. B's rows are read with masks, so an unpacked B may end at
 * column nr. */
void jbx_gemm_tile_avx512(int64_t kc, const float *ap, const float *bp, int64_t bstride, float *c,
                          int64_t ldc, int mr, int nr, float beta);

#endif
