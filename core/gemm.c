/* jbx_sgemm (see jbx_gemm.h): OpenBLAS, or a packed, cache-blocked product around the
 * AVX-512 micro-kernel of gemm_avx512.c, in the classic loop order: for each block of NC
 * columns and KC depth, B is packed once into NR-column panels; for each block of MC rows,
 * A is packed (alpha folded in) into MR-row panels; then every (B panel, A panel) pair is
 * one micro-kernel call.
 *
 * With few rows (M <= 16: the sampler's batches) each element of B is used once or twice,
 * and a B small enough for L1 gains nothing from packing: such a row-major B is read in
 * place (see gemm_kernel.h for the tile and depth used then). A call made inside a
 * parallel region (attention runs one block per thread) runs on its own thread alone. */
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
  const float *bias; /* added to every row of C (beta 0, alpha 1), or NULL */
  int direct_b;      /* B read in place (row-major, few rows of A) */
  int mr;            /* rows of a tile: GEMM_MR, or GEMM_MR_SMALL for few rows */
  gemm_tile_fn *tile;
} gemm_job;

static int64_t min64(int64_t x, int64_t y) { return x < y ? x : y; }
static int64_t ceil_div(int64_t x, int64_t y) { return (x + y - 1) / y; }

/* One panel of A's block (rows i0.., depth p0..): kc columns of MR values, alpha times
 * op(A), rows past `rows` zero. Each loop reads its source contiguously. */
static void pack_a_panel(const gemm_job *g, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                         float *dst) {
  const int64_t mr = g->mr;
  if (rows > mr) rows = mr;
  if (g->ta) {
    for (int64_t p = 0; p < kc; p++) {
      const float *src = g->a + (p0 + p) * g->lda + i0;
      float *col = dst + p * mr;
      for (int64_t i = 0; i < rows; i++) col[i] = g->alpha * src[i];
      for (int64_t i = rows; i < mr; i++) col[i] = 0.0f;
    }
    return;
  }
  for (int64_t i = 0; i < mr; i++) {
    const float *src = g->a + (i0 + i) * g->lda + p0;
    if (i < rows)
      for (int64_t p = 0; p < kc; p++) dst[p * mr + i] = g->alpha * src[p];
    else
      for (int64_t p = 0; p < kc; p++) dst[p * mr + i] = 0.0f;
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

/* Depth of one block: KC, or KC_DIRECT rows when B is read in place. */
static int64_t depth_block(const gemm_job *g) { return g->direct_b ? GEMM_KC_DIRECT : GEMM_KC; }

/* C[i0:i1, j0:j1] by one thread, with its own packing space `ap`, `bp`. */
static void run_block(const gemm_job *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1, float *ap,
                      float *bp) {
  const int64_t mr = g->mr, kb = depth_block(g);
  for (int64_t jc = j0; jc < j1; jc += GEMM_NC) {
    const int64_t nc = min64(GEMM_NC, j1 - jc), nq = ceil_div(nc, GEMM_NR);
    for (int64_t pc = 0; pc < g->k; pc += kb) {
      const int64_t kc = min64(kb, g->k - pc);
      const float beta = pc == 0 ? g->beta : 1.0f;
      const float *b0 = bp;
      int64_t bstride = GEMM_NR, bstep = GEMM_NR * kc;
      if (g->direct_b)
        b0 = g->b + pc * g->ldb + jc, bstride = g->ldb, bstep = GEMM_NR;
      else
        for (int64_t q = 0; q < nq; q++)
          pack_b_panel(g, pc, kc, jc + q * GEMM_NR, min64(GEMM_NR, nc - q * GEMM_NR), bp + q * bstep);
      for (int64_t ic = i0; ic < i1; ic += GEMM_MC) {
        const int64_t mc = min64(GEMM_MC, i1 - ic), np = ceil_div(mc, mr);
        for (int64_t p = 0; p < np; p++)
          pack_a_panel(g, ic + p * mr, mc - p * mr, pc, kc, ap + p * mr * kc);
        for (int64_t q = 0; q < nq; q++) {
          const int nr = (int)min64(GEMM_NR, nc - q * GEMM_NR);
          const float *bias = g->bias && pc == 0 ? g->bias + jc + q * GEMM_NR : NULL;
          float *cq = g->c + ic * g->ldc + jc + q * GEMM_NR;
          for (int64_t p = 0; p < np; p++)
            g->tile(kc, ap + p * mr * kc, b0 + q * bstep, bstride, cq + p * mr * g->ldc, g->ldc,
                    (int)min64(mr, mc - p * mr), nr, beta, bias);
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

/* C[i0:i1, j0:j1] by OpenBLAS: the engine without AVX-512, and the way out when packing
 * space cannot be had. A bias is copied into the rows first and accumulated onto. */
static void blas_block(const gemm_job *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  float *c = g->c + i0 * g->ldc + j0;
  if (g->bias)
    for (int64_t i = 0; i < i1 - i0; i++)
      memcpy(c + i * g->ldc, g->bias + j0, (size_t)(j1 - j0) * sizeof(float));
  cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans,
              (int)(i1 - i0), (int)(j1 - j0), (int)g->k, g->alpha,
              g->a + (g->ta ? i0 : i0 * g->lda), (int)g->lda,
              g->b + (g->tb ? j0 * g->ldb : j0), (int)g->ldb, g->bias ? 1.0f : g->beta, c,
              (int)g->ldc);
}

/* C = beta C (+ bias): what a product with nothing to add leaves (beta 0 clears, NaNs
 * included). */
static void scale_c(const gemm_job *g) {
  for (int64_t i = 0; i < g->m; i++)
    for (int64_t j = 0; j < g->n; j++) {
      float *cij = g->c + i * g->ldc + j;
      *cij = (g->beta == 0.0f ? 0.0f : g->beta * *cij) + (g->bias ? g->bias[j] : 0.0f);
    }
}

static void gemm(gemm_job *g) {
  if (g->m <= 0 || g->n <= 0) return;
  if (engine() != ENGINE_AVX512) {
    blas_block(g, 0, g->m, 0, g->n);
    return;
  }
  if (g->k <= 0 || g->alpha == 0.0f) {
    scale_c(g);
    return;
  }
  const int64_t m = g->m, n = g->n, k = g->k;
  g->direct_b = !g->tb && (m <= 16 || k * n <= 16384); /* B used little, or in L1 */
  const int small = m <= 16;
  g->mr = small ? GEMM_MR_SMALL : GEMM_MR;
  g->tile = small ? jbx_gemm_tile_avx512_small : jbx_gemm_tile_avx512;
  /* Threads pay from about a 128^3 product on; nested calls run alone. Each thread takes
   * its own block of C (rows when there are many, else columns) and packs for itself: no
   * barriers, and a second copy of a packed B panel is cheap next to the rows it serves. */
  int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if ((double)m * (double)n * (double)k < 2097152.0) nt = 1;
  const int by_rows = m >= (int64_t)nt * GEMM_MC || m >= n;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    const int64_t total = by_rows ? m : n, unit = by_rows ? g->mr : GEMM_NR;
    const int64_t count = ceil_div(total, unit);
    const int64_t lo = min64(count * tid / team * unit, total);
    const int64_t hi = min64(count * (tid + 1) / team * unit, total);
    const int64_t i0 = by_rows ? lo : 0, i1 = by_rows ? hi : m;
    const int64_t j0 = by_rows ? 0 : lo, j1 = by_rows ? n : hi;
    const int64_t kc = min64(depth_block(g), k);
    const size_t a_floats = (size_t)(ceil_div(min64(i1 - i0, GEMM_MC), g->mr) * g->mr * kc);
    const size_t b_floats =
        g->direct_b ? 0 : (size_t)(ceil_div(min64(j1 - j0, GEMM_NC), GEMM_NR) * GEMM_NR * kc);
    float *space = hi > lo ? packing_space(a_floats + b_floats) : NULL;
    if (hi > lo && space)
      run_block(g, i0, i1, j0, j1, space, space + a_floats);
    else if (hi > lo)
      blas_block(g, i0, i1, j0, j1);
  }
}

void jbx_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, float alpha,
               const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
               int64_t ldc) {
  gemm_job g = {.ta = ta == CblasTrans, .tb = tb == CblasTrans, .m = m, .n = n, .k = k,
                .alpha = alpha, .beta = beta, .a = a, .b = b, .lda = lda, .ldb = ldb, .ldc = ldc,
                .c = c};
  gemm(&g);
}

void jbx_sgemm_bias(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k,
                    const float *a, int64_t lda, const float *b, int64_t ldb, const float *bias,
                    float *c, int64_t ldc) {
  gemm_job g = {.ta = ta == CblasTrans, .tb = tb == CblasTrans, .m = m, .n = n, .k = k,
                .alpha = 1.0f, .beta = 0.0f, .a = a, .b = b, .lda = lda, .ldb = ldb, .ldc = ldc,
                .c = c, .bias = bias};
  gemm(&g);
}
