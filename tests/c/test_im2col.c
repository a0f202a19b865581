/* The convolution engine (core/ops/im2col.c) on raw buffers: the three products against
 * a direct loop in double, on short items grouped into one panel and on long items cut
 * into slices, with stride, padding and dilation; the stride-1 column row the fused ops
 * share; and the bias helpers. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "im2col.h"
#include "jbx_rng.h"

static float *randn_buf(int64_t n, uint64_t seed) {
  jbx_rng rng;
  jbx_rng_seed(&rng, seed);
  float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
  for (int64_t i = 0; i < n; i++) p[i] = (float)jbx_rng_normal(&rng);
  return p;
}

/* Worst |a - b| / (1 + max |b|). */
static double rel_err(const float *a, const double *b, int64_t n) {
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs(a[i] - b[i]);
    worst = d > worst || d != d ? (d != d ? INFINITY : d) : worst;
    scale = fabs(b[i]) > scale ? fabs(b[i]) : scale;
  }
  return worst / (1 + scale);
}

/* y, gx, gw of sum(y * gy) by the definition of a convolution. */
static void reference(const jbx_conv_geom *g, const float *x, const float *w, const float *gy,
                      double *y, double *gx, double *gw) {
  const int64_t CK = g->in_ch * g->kernel;
  for (int64_t b = 0; b < g->batch; b++)
    for (int64_t o = 0; o < g->out_ch; o++)
      for (int64_t t = 0; t < g->out_len; t++)
        for (int64_t c = 0; c < g->in_ch; c++)
          for (int64_t k = 0; k < g->kernel; k++) {
            int64_t j = t * g->stride - g->padding + k * g->dilation;
            if (j < 0 || j >= g->in_len) continue;
            int64_t xi = (b * g->in_ch + c) * g->in_len + j, yi = (b * g->out_ch + o) * g->out_len + t;
            int64_t wi = o * CK + c * g->kernel + k;
            y[yi] += (double)x[xi] * w[wi];
            gx[xi] += (double)gy[yi] * w[wi];
            gw[wi] += (double)gy[yi] * x[xi];
          }
}

static void check_geometry(const char *label, jbx_conv_geom g) {
  int64_t nx = g.batch * g.in_ch * g.in_len, ny = g.batch * g.out_ch * g.out_len;
  int64_t nw = g.out_ch * g.in_ch * g.kernel;
  float *x = randn_buf(nx, 1), *w = randn_buf(nw, 2), *gy = randn_buf(ny, 3);
  float *y = malloc((size_t)ny * sizeof *y), *gx = malloc((size_t)nx * sizeof *gx);
  float *gw = malloc((size_t)nw * sizeof *gw);
  double *ry = calloc((size_t)ny, sizeof *ry), *rgx = calloc((size_t)nx, sizeof *rgx);
  double *rgw = calloc((size_t)nw, sizeof *rgw);
  reference(&g, x, w, gy, ry, rgx, rgw);
  CHECK(jbx_conv_gemm_forward(label, &g, x, w, y) == 0, "%s forward", label);
  CHECK(rel_err(y, ry, ny) < 1e-5, "%s: forward differs by %.3g", label, rel_err(y, ry, ny));
  CHECK(jbx_conv_gemm_backward_data(label, &g, gy, w, gx) == 0, "%s data", label);
  CHECK(rel_err(gx, rgx, nx) < 1e-5, "%s: input gradient differs by %.3g", label, rel_err(gx, rgx, nx));
  CHECK(jbx_conv_gemm_backward_weight(label, &g, gy, x, gw) == 0, "%s weight", label);
  CHECK(rel_err(gw, rgw, nw) < 1e-5, "%s: weight gradient differs by %.3g", label, rel_err(gw, rgw, nw));
  free(x), free(w), free(gy), free(y), free(gx), free(gw), free(ry), free(rgx), free(rgw);
}

static jbx_conv_geom geom(int64_t B, int64_t cin, int64_t L, int64_t cout, int64_t K, int64_t s,
                          int64_t p, int64_t d) {
  jbx_conv_geom g = {.batch = B, .in_ch = cin, .in_len = L, .out_ch = cout, .kernel = K,
                     .stride = s, .padding = p, .dilation = d};
  g.out_len = (L + 2 * p - d * (K - 1) - 1) / s + 1;
  return g;
}

static void test_products(void) {
  check_geometry("short items grouped, k3", geom(5, 3, 20, 4, 3, 1, 1, 1));
  check_geometry("short items grouped, stride 2 dilation 2", geom(4, 2, 17, 3, 3, 2, 2, 2));
  check_geometry("identity k1", geom(3, 4, 30, 2, 1, 1, 0, 1));
  check_geometry("long item in slices, k3 d3", geom(1, 2, 9000, 3, 3, 1, 3, 3));
  check_geometry("long items in slices, k4 s2", geom(2, 2, 9001, 2, 4, 2, 1, 1));
}

static void test_im2col_row(void) {
  const float src[5] = {1, -2, NAN, 4, -5};
  float row[8];
  jbx_im2col_row(src, 5, -2, 8, row, false); /* row[j] = src[j - 2] */
  const float want[8] = {0, 0, 1, -2, NAN, 4, -5, 0};
  int bad = 0;
  for (int j = 0; j < 8; j++) bad += !(row[j] == want[j] || (isnan(row[j]) && isnan(want[j])));
  CHECK(bad == 0, "shifted right, zero outside: %d wrong", bad);
  jbx_im2col_row(src, 5, 2, 4, row, true); /* row[j] = relu(src[j + 2]) */
  CHECK(isnan(row[0]) && row[1] == 4 && row[2] == 0 && row[3] == 0, "relu, NaN passing, zero past the end");
  jbx_im2col_row(src, 5, 9, 3, row, false);
  CHECK(row[0] == 0 && row[1] == 0 && row[2] == 0, "entirely outside: zeros");
}

static void test_bias(void) {
  float t[2 * 3 * 2] = {0}, gb[3];
  const float bias[3] = {1, 2, 3};
  jbx_conv_add_bias(t, 2, 3, 2, bias);
  CHECK(t[0] == 1 && t[3] == 2 && t[10] == 3, "bias added per channel");
  jbx_conv_sum_bias(t, 2, 3, 2, gb);
  CHECK(gb[0] == 4 && gb[1] == 8 && gb[2] == 12, "summed over batch and length");
}

int main(void) {
  test_products();
  test_im2col_row();
  test_bias();
  return check_summary();
}
