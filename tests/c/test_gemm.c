/* jbx_sgemm against a double-precision triple loop: every transpose pair, alpha and beta,
 * leading dimensions wider than the matrix, sizes on and off the block edges (MR, NR, KC,
 * MC, NC), the in-place-B path for few rows, beta 0 over NaN, k = 0, the fused bias, the
 * same bits for a sub-block computed alone, and calls nested in a parallel region. Runs whichever engine this CPU gets (named in the output); with
 * JBX_GEMM=blas it checks the OpenBLAS route. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "jbx_gemm.h"

static unsigned long long state = 88172645463325252ull;
static float uniform(void) { /* xorshift: deterministic values in [-1, 1) */
  state ^= state << 13, state ^= state >> 7, state ^= state << 17;
  return (float)((state >> 40) * (2.0 / 16777216.0) - 1.0);
}

static float *random_matrix(int64_t rows, int64_t ld) {
  float *x = malloc((size_t)(rows * ld) * sizeof *x);
  for (int64_t i = 0; i < rows * ld; i++) x[i] = uniform();
  return x;
}

/* One product C = alpha op(A) op(B) + beta C with A, B, C of leading dims cols + pad; with
 * `biased`, jbx_sgemm_bias's C = op(A) op(B) + bias instead (alpha 1, beta 0). */
static double worst_error_of(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                             float beta, int64_t pad, int nan_c, int biased) {
  const int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
  const int64_t lda = ac + pad, ldb = bc + pad, ldc = n + pad;
  float *a = random_matrix(ar, lda), *b = random_matrix(br, ldb), *c = random_matrix(m, ldc);
  float *bias = biased ? random_matrix(1, n) : NULL;
  double *want = malloc((size_t)(m * n) * sizeof *want);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double s = 0;
      for (int64_t p = 0; p < k; p++)
        s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
      if (nan_c) c[i * ldc + j] = NAN;
      want[i * n + j] = alpha * s + (beta == 0.0f ? 0.0 : beta * (double)c[i * ldc + j]) +
                        (bias ? bias[j] : 0.0);
    }
  float pad_mark = c[ldc - 1]; /* a padding column must stay untouched */
  if (bias)
    jbx_sgemm_bias(ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, a, lda,
                   b, ldb, bias, c, ldc);
  else
    jbx_sgemm(ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
              lda, b, ldb, beta, c, ldc);
  double worst = 0;
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double e = fabs(c[i * ldc + j] - want[i * n + j]) / (1.0 + sqrt((double)k));
      worst = isnan(e) ? INFINITY : fmax(worst, e);
    }
  if (pad > 0 && c[ldc - 1] != pad_mark) worst = INFINITY;
  free(a), free(b), free(c), free(want), free(bias);
  return worst;
}

static double worst_error(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                          int64_t pad, int nan_c) {
  return worst_error_of(ta, tb, m, n, k, alpha, beta, pad, nan_c, 0);
}

static void check_shape(int64_t m, int64_t n, int64_t k, int64_t pad) {
  static const float alphas[] = {1.0f, -0.5f}, betas[] = {0.0f, 1.0f, 0.75f};
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (int s = 0; s < 3; s++) {
        float alpha = alphas[s % 2], beta = betas[s];
        double e = worst_error(ta, tb, m, n, k, alpha, beta, pad, beta == 0.0f);
        CHECK(e < 1e-5, "m %lld n %lld k %lld ta %d tb %d alpha %g beta %g pad %lld: error %g",
              (long long)m, (long long)n, (long long)k, ta, tb, alpha, beta, (long long)pad, e);
      }
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      double e = worst_error_of(ta, tb, m, n, k, 1.0f, 0.0f, pad, 1, 1);
      CHECK(e < 1e-5, "bias: m %lld n %lld k %lld ta %d tb %d pad %lld: error %g", (long long)m,
            (long long)n, (long long)k, ta, tb, (long long)pad, e);
    }
}

int main(void) {
  printf("engine: %s\n", jbx_gemm_engine());
  const int64_t shapes[][3] = {
      {1, 1, 1},     {1, 37, 5},     {5, 1, 9},     {12, 32, 256},  {13, 33, 257},  {24, 64, 64},
      {25, 31, 3},   {16, 1024, 70},  {8, 40, 100},  {9, 64, 33}, {11, 96, 300}, {64, 64, 64},   {144, 96, 511}, {145, 97, 513},
      {300, 200, 40}, {97, 3100, 33}, {289, 77, 600}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
    for (int64_t pad = 0; pad <= 3; pad += 3) check_shape(shapes[s][0], shapes[s][1], shapes[s][2], pad);

  /* k = 0 leaves beta C (beta 0: zeros even over NaN) */
  CHECK(worst_error(0, 0, 7, 9, 0, 1.0f, 0.5f, 1, 0) == 0.0, "k = 0, beta 0.5");
  CHECK(worst_error(0, 1, 7, 9, 0, 1.0f, 0.0f, 0, 1) == 0.0, "k = 0, beta 0 over NaN");
  CHECK(worst_error_of(0, 0, 7, 9, 0, 1.0f, 0.0f, 2, 1, 1) == 0.0, "k = 0 with a bias");

  /* Every element is one chain of multiply-adds in depth order, so a sub-block computed
   * alone (other tiles, the few-rows path, other depth blocks, one thread) has the same
   * bits as inside a large product on two threads: how data-parallel ranks stay exact.
   * (Our engine's promise; OpenBLAS's results are only reported.) */
  {
    const int64_t M = 300, N = 700, K = 1000, r0 = 3, rows = 5, c0 = 64, cols = 20;
    float *a = random_matrix(M, K), *b = random_matrix(K, N);
    float *whole = calloc((size_t)(M * N), sizeof *whole), *part = calloc((size_t)(rows * cols), sizeof *part);
    omp_set_num_threads(2);
    jbx_sgemm(CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, whole, N);
    omp_set_num_threads(1);
    jbx_sgemm(CblasNoTrans, CblasNoTrans, rows, cols, K, 1.0f, a + r0 * K, K, b + c0, N, 0.0f, part, cols);
    omp_set_num_threads(2);
    int differ = 0;
    for (int64_t i = 0; i < rows; i++)
      for (int64_t j = 0; j < cols; j++) differ += part[i * cols + j] != whole[(r0 + i) * N + c0 + j];
    if (strcmp(jbx_gemm_engine(), "avx512") == 0)
      CHECK(differ == 0, "%d of %lld elements of a sub-block differ from the whole product", differ,
            (long long)(rows * cols));
    else /* OpenBLAS promises no such thing */
      printf("openblas: %d of %lld elements of a sub-block differ from the whole product\n", differ,
             (long long)(rows * cols));
    free(a), free(b), free(whole), free(part);
  }

  /* Calls nested in a parallel region each run alone and agree with the serial result. */
  int bad = 0;
#pragma omp parallel for reduction(+ : bad) num_threads(2)
  for (int t = 0; t < 8; t++) {
    float a[70 * 40], b[40 * 50], c[70 * 50], c1[70 * 50];
    for (int i = 0; i < 70 * 40; i++) a[i] = (float)((i * 7 + t) % 13) - 6.0f;
    for (int i = 0; i < 40 * 50; i++) b[i] = (float)((i * 5 + t) % 11) - 5.0f;
    jbx_sgemm(CblasNoTrans, CblasNoTrans, 70, 50, 40, 1.0f, a, 40, b, 50, 0.0f, c, 50);
    for (int i = 0; i < 70; i++)
      for (int j = 0; j < 50; j++) {
        float s = 0;
        for (int p = 0; p < 40; p++) s += a[i * 40 + p] * b[p * 50 + j];
        c1[i * 50 + j] = s;
      }
    for (int i = 0; i < 70 * 50; i++) bad += c[i] != c1[i]; /* small integers: exact */
  }
  CHECK(bad == 0, "%d nested results differ", bad);
  return check_summary();
}
