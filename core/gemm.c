/* jbx_sgemm (see jbx_gemm.h): OpenBLAS, or a packed, cache-blocked product around the
 * AVX-512 micro-kernel of gemm_avx512.c, in the classic loop order: for each block of NC
 * columns and KC depth, B is packed once into NR-column panels; for each block of MC rows,
 * A is packed (alpha folded in) into MR-row panels; then every (B panel, A panel) pair is
 * one micro-kernel call.
 *
 * With only a few rows (M <= 2 MR: the sampler's batches, attention's row blocks) each
 * element of B is used once or twice, so a row-major B is read in place, not packed.
 * A call made inside a parallel region (attention runs one block per thread) runs on its
 * own thread alone. */
#include "jbx_gemm.h"

#include "gemm_kernel.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { ENGINE_UNKNOWN, ENGINE_BLAS, ENGINE_AVX512 };

static int engine(void) {
  static _Atomic int chosen = ENGINE_UNKNOWN;
  int e = atomic_load(&chosen);
  if (e != ENGINE_UNKNOWN) return e;
  const char *want = getenv("JBX_GEMM");
  if (want && strcmp(want, "blas") == 0) e = ENGINE_BLAS;
  else e = __builtin_cpu_supports("avx512f") ? ENGINE_AVX512 : ENGINE_BLAS;
  atomic_store(&chosen, e);
  return e;
}

const char *jbx_gemm_engine(void) { return engine() == ENGINE_AVX512 ? "avx512" : "openblas"; }

typedef struct {
  int ta, tb; /* op(A), op(B) transposed */
  int64_t m, n, k;
  float alpha, beta;
  const float *a, *b;
  int64_t lda, ldb, ldc;
  float *c;
  int direct_b; /* B read in place (row-major, few rows of A) */
} gemm_job;

static int64_t min64(int64_t x, int64_t y) { return x < y ? x : y; }
static int64_t ceil_div(int64_t x, int64_t y) { return (x + y - 1) / y; }

/* One panel of A's block (rows i0.., depth p0..): kc columns of MR values, alpha times
 * op(A), rows past `rows` zero. Each loop reads its source contiguously. */
static void pack_a_panel(const gemm_job *g, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                         float *dst) {
  if (rows > GEMM_MR) rows = GEMM_MR;
  if (g->ta) {
    for (int64_t p = 0; p < kc; p++) {
      const float *src = g->a + (p0 + p) * g->lda + i0;
      float *col = dst + p * GEMM_MR;
      for (int64_t i = 0; i < rows; i++) col[i] = g->alpha * src[i];
      for (int64_t i = rows; i < GEMM_MR; i++) col[i] = 0.0f;
    }
    return;
  }
  for (int64_t i = 0; i < GEMM_MR; i++) {
    const float *src = g->a + (i0 + i) * g->lda + p0;
    if (i < rows)
      for (int64_t p = 0; p < kc; p++) dst[p * GEMM_MR + i] = g->alpha * src[p];
    else
      for (int64_t p = 0; p < kc; p++) dst[p * GEMM_MR + i] = 0.0f;
  }
}

/* One panel of B (depth p0.., columns j0..): kc rows of NR values, columns past `cols`
 * zero. */
static void pack_b_panel(const gemm_job *g, int64_t p0, int64_t kc, int64_t j0, int64_t cols,
                         float *dst) {
  if (g->tb) {
    for (int64_t j = 0; j < GEMM_NR; j++) {
      const float *src = g->b + (j0 + j) * g->ldb + p0;
      if (j < cols)
        for (int64_t p = 0; p < kc; p++) dst[p * GEMM_NR + j] = src[p];
      else
        for (int64_t p = 0; p < kc; p++) dst[p * GEMM_NR + j] = 0.0f;
    }
    return;
  }
  for (int64_t p = 0; p < kc; p++) {
    float *row = dst + p * GEMM_NR;
    memcpy(row, g->b + (p0 + p) * g->ldb + j0, (size_t)cols * sizeof(float));
    for (int64_t j = cols; j < GEMM_NR; j++) row[j] = 0.0f;
  }
}

/* C[i0:i1, j0:j1] by one thread, with its own packing space `ap`, `bp`. */
static void run_block(const gemm_job *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1, float *ap,
                      float *bp) {
  for (int64_t jc = j0; jc < j1; jc += GEMM_NC) {
    const int64_t nc = min64(GEMM_NC, j1 - jc), nq = ceil_div(nc, GEMM_NR);
    for (int64_t pc = 0; pc < g->k; pc += GEMM_KC) {
      const int64_t kc = min64(GEMM_KC, g->k - pc);
      const float beta = pc == 0 ? g->beta : 1.0f;
      const float *b0 = bp;
      int64_t bstride = GEMM_NR, bstep = GEMM_NR * kc;
      if (g->direct_b)
        b0 = g->b + pc * g->ldb + jc, bstride = g->ldb, bstep = GEMM_NR;
      else
        for (int64_t q = 0; q < nq; q++)
          pack_b_panel(g, pc, kc, jc + q * GEMM_NR, min64(GEMM_NR, nc - q * GEMM_NR), bp + q * bstep);
      for (int64_t ic = i0; ic < i1; ic += GEMM_MC) {
        const int64_t mc = min64(GEMM_MC, i1 - ic), np = ceil_div(mc, GEMM_MR);
        for (int64_t p = 0; p < np; p++)
          pack_a_panel(g, ic + p * GEMM_MR, mc - p * GEMM_MR, pc, kc, ap + p * GEMM_MR * kc);
        for (int64_t q = 0; q < nq; q++) {
          const int nr = (int)min64(GEMM_NR, nc - q * GEMM_NR);
          float *cq = g->c + ic * g->ldc + jc + q * GEMM_NR;
          for (int64_t p = 0; p < np; p++)
            jbx_gemm_tile_avx512(kc, ap + p * GEMM_MR * kc, b0 + q * bstep, bstride,
                                 cq + p * GEMM_MR * g->ldc, g->ldc,
                                 (int)min64(GEMM_MR, mc - p * GEMM_MR), nr, beta);
        }
      }
    }
  }
}

/* The caller's packing space, kept between calls (one per thread that calls). */
static float *packing_space(size_t floats) {
  static _Thread_local float *space;
  static _Thread_local size_t capacity;
  if (floats <= capacity) return space;
  free(space);
  capacity = (floats + 1023) & ~(size_t)1023;
  space = aligned_alloc(64, capacity * sizeof(float));
  if (!space) capacity = 0;
  return space;
}

/* C = beta C: what a product with nothing to add leaves (beta 0 clears, NaNs included). */
static void scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

void jbx_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, float alpha,
               const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
               int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (engine() != ENGINE_AVX512) {
    cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb,
                beta, c, (int)ldc);
    return;
  }
  if (k <= 0 || alpha == 0.0f) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  gemm_job g = {.ta = ta == CblasTrans, .tb = tb == CblasTrans, .m = m, .n = n, .k = k,
                .alpha = alpha, .beta = beta, .a = a, .b = b, .lda = lda, .ldb = ldb, .ldc = ldc,
                .c = c};
  g.direct_b = !g.tb && (m <= 2 * GEMM_MR || k * n <= 16384); /* B used little, or in L1 */
  /* Threads pay from about a 128^3 product on; nested calls run alone. Each thread takes
   * its own block of C (rows when there are many, else columns) and packs for itself: no
   * barriers, and a second copy of a packed B panel is cheap next to the rows it serves. */
  int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if ((double)m * (double)n * (double)k < 2097152.0) nt = 1;
  const int by_rows = m >= (int64_t)nt * GEMM_MC || m >= n;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    const int64_t unit = by_rows ? GEMM_MR : GEMM_NR, count = ceil_div(by_rows ? m : n, unit);
    const int64_t lo = min64(count * tid / team * unit, by_rows ? m : n);
    const int64_t hi = min64(count * (tid + 1) / team * unit, by_rows ? m : n);
    const int64_t rows = by_rows ? hi - lo : m, cols = by_rows ? n : hi - lo;
    const int64_t kc = min64(GEMM_KC, k);
    const size_t a_floats = (size_t)(ceil_div(min64(rows, GEMM_MC), GEMM_MR) * GEMM_MR * kc);
    const size_t b_floats =
        g.direct_b ? 0 : (size_t)(ceil_div(min64(cols, GEMM_NC), GEMM_NR) * GEMM_NR * kc);
    float *space = hi > lo ? packing_space(a_floats + b_floats) : NULL;
    if (hi > lo && space)
      run_block(&g, by_rows ? lo : 0, by_rows ? hi : m, by_rows ? 0 : lo, by_rows ? n : hi, space,
                space + a_floats);
    else if (hi > lo) /* no memory for packing: OpenBLAS packs into its own buffers */
      cblas_sgemm(CblasRowMajor, ta, tb, (int)rows, (int)cols, (int)k, alpha,
                  a + (by_rows ? (g.ta ? lo : lo * lda) : 0), (int)lda,
                  b + (by_rows ? 0 : (g.tb ? lo * ldb : lo)), (int)ldb, beta,
                  c + (by_rows ? lo * ldc : lo), (int)ldc);
  }
}
