/* STFT room: magnitudes and their gradients against torch (tests/fixtures/stft.fix, made by
 * tools/fixtures/stft.py), istft against torch and as the inverse of stft, the HTK mel
 * filterbank, and every error message (gradient checks: rows of op_table.h).
 * With JBX_STFT_BENCH=1 it also times stft_mag forward+backward at Jukebox's sizes. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "fixture.h"
#include "jbx_error.h"
#include "jbx_rng.h"
#include "jbx_stft.h"
#include "jbx_tensor.h"

/* Worst |a - b| / (1 + |b|) over two arrays of the same numel (a may be strided). */
static double worst_err(const jbx_tensor *a, const jbx_tensor *b) {
  if (!a || !b || jbx_numel(a) != jbx_numel(b)) return 1e9;
  double w = 0;
  for (int64_t i = 0, n = jbx_numel(b); i < n; i++) {
    double x = jbx_get(a, i), y = jbx_get(b, i), e = fabs(x - y) / (1.0 + fabs(y));
    if (!(e <= w)) w = isnan(e) ? 1e9 : e;
  }
  return w;
}

/* The fixture's probe g[b, k, t] = cos(0.37 k + 1.3 t + 2.1 b). */
static jbx_tensor *probe(const jbx_tensor *mag) {
  jbx_tensor *g = jbx_empty(JBX_F32, mag->ndim, mag->shape);
  int64_t B = mag->ndim == 3 ? mag->shape[0] : 1, K = mag->shape[mag->ndim - 2],
          T = mag->shape[mag->ndim - 1];
  float *p = jbx_f32(g);
  for (int64_t b = 0; b < B; b++)
    for (int64_t k = 0; k < K; k++)
      for (int64_t t = 0; t < T; t++)
        p[(b * K + k) * T + t] = (float)cos(0.37 * k + 1.3 * t + 2.1 * b);
  return g;
}

/* Magnitudes (every bin_step-th bin) and d sum(mag * g) / dx against the fixture. */
static void check_resolution(fixture *fx, const char *xname, const char *magname,
                             const char *gxname, int n_fft, int hop, int win, int step) {
  jbx_tensor *x = jbx_clone(fixture_get(fx, xname));
  x->requires_grad = true;
  jbx_tensor *mag = jbx_stft_mag(x, n_fft, hop, win);
  CHECK(mag != NULL, "stft_mag %d/%d/%d: %s", n_fft, hop, win, jbx_last_error());
  if (!mag) return;
  jbx_tensor *ref = fixture_get(fx, magname);
  CHECK(mag->ndim == 3 && mag->shape[1] == n_fft / 2 + 1 && mag->shape[2] == ref->shape[2],
        "shape of stft_mag %d/%d/%d", n_fft, hop, win);
  jbx_tensor *sub = jbx_empty(JBX_F32, 3, ref->shape);
  for (int64_t b = 0; b < ref->shape[0]; b++)
    for (int64_t k = 0; k < ref->shape[1]; k++)
      for (int64_t t = 0; t < ref->shape[2]; t++)
        jbx_f32(sub)[(b * ref->shape[1] + k) * ref->shape[2] + t] =
            jbx_f32(mag)[(b * mag->shape[1] + k * step) * mag->shape[2] + t];
  double e = worst_err(sub, ref);
  CHECK(e < 1e-4, "magnitudes %d/%d/%d: worst error %.3g", n_fft, hop, win, e);
  jbx_tensor *g = probe(mag);
  CHECK(jbx_backward(mag, g) == 0, "backward: %s", jbx_last_error());
  double eg = worst_err(x->grad, fixture_get(fx, gxname));
  CHECK(eg < 1e-3, "gradient %d/%d/%d: worst error %.3g", n_fft, hop, win, eg);
  printf("  %4d/%3d/%4d: magnitude err %.2g, gradient err %.2g\n", n_fft, hop, win, e, eg);
  jbx_release(g);
  jbx_release(sub);
  jbx_release(mag);
  jbx_release(x);
}

static void test_fixtures(fixture *fx) {
  char name[3][32];
  for (int i = 0; i < 4; i++) {
    snprintf(name[0], 32, "r%d_cfg", i);
    jbx_tensor *cfg = fixture_get(fx, name[0]);
    if (!cfg) {
      CHECK(0, "fixture misses %s", name[0]);
      continue;
    }
    int32_t *c = jbx_i32(cfg);
    snprintf(name[1], 32, "r%d_mag", i);
    snprintf(name[2], 32, "r%d_gx", i);
    check_resolution(fx, "x", name[1], name[2], c[0], c[1], c[2], c[3]);
  }
  check_resolution(fx, "small_x", "small_mag", "small_gx", 16, 4, 12, 1);
}


/* |X| = 0 everywhere: zero gradient, no NaN. */
static void test_zero_signal(void) {
  int64_t shape[2] = {1, 64};
  jbx_tensor *x = jbx_zeros(2, shape);
  x->requires_grad = true;
  jbx_tensor *m = jbx_stft_mag(x, 16, 4, 12);
  jbx_tensor *g = jbx_full(m->ndim, m->shape, 1.0f);
  CHECK(jbx_backward(m, g) == 0, "backward: %s", jbx_last_error());
  double s = 0;
  for (int64_t i = 0; i < 64; i++) s += fabs(jbx_get(x->grad, i));
  CHECK(s == 0.0, "gradient at |X| = 0 should be 0, sum |g| = %g", s);
  jbx_release(g);
  jbx_release(m);
  jbx_release(x);
}

/* A strided view gives the same magnitudes and the gradient lands in the base. */
static void test_strided_and_layout(fixture *fx) {
  jbx_tensor *x = fixture_get(fx, "small_x"); /* [2, 64] */
  jbx_tensor *xt = jbx_clone(x);
  jbx_tensor *tr = jbx_transpose(xt, 0, 1); /* [64, 2], non-contiguous */
  jbx_tensor *back = jbx_transpose(tr, 0, 1);
  jbx_tensor *m1 = jbx_stft_mag(back, 16, 4, 12), *m2 = jbx_stft_mag(x, 16, 4, 12);
  CHECK(worst_err(m1, m2) == 0.0, "strided input gives different magnitudes");
  jbx_tensor *row = jbx_narrow(x, 0, 1, 1), *row1 = jbx_squeeze(row, 0);
  jbx_tensor *m3 = jbx_stft_mag(row1, 16, 4, 12);
  CHECK(m3 && m3->ndim == 2 && m3->shape[0] == 9 && m3->shape[1] == 17, "1-D input shape");
  jbx_tensor *m2row = jbx_narrow(m2, 0, 1, 1);
  CHECK(worst_err(m3, m2row) == 0.0, "1-D input differs from its batch row");
  /* complex stft: |(re, im)| equals stft_mag */
  jbx_tensor *c = jbx_stft(x, 16, 4, 12);
  CHECK(c && c->ndim == 4 && c->shape[1] == 9 && c->shape[2] == 17 && c->shape[3] == 2,
        "stft shape");
  double w = 0;
  for (int64_t i = 0; c && i < jbx_numel(m2); i++) {
    double re = jbx_f32(c)[2 * i], im = jbx_f32(c)[2 * i + 1];
    w = fmax(w, fabs(sqrt(re * re + im * im) - jbx_f32(m2)[i]));
  }
  CHECK(w < 1e-5, "|stft| vs stft_mag: %g", w);
  jbx_release(c);
  jbx_release(m2row);
  jbx_release(m3);
  jbx_release(row1);
  jbx_release(row);
  jbx_release(m1);
  jbx_release(m2);
  jbx_release(back);
  jbx_release(tr);
  jbx_release(xt);
}

static void test_istft(fixture *fx) {
  jbx_tensor *spec = fixture_get(fx, "istft_spec");
  jbx_tensor *y = jbx_istft(spec, 16, 4, 12, 0);
  CHECK(y && y->ndim == 2 && y->shape[1] == 64, "istft default length: %s", jbx_last_error());
  CHECK(worst_err(y, fixture_get(fx, "istft_out")) < 1e-5, "istft vs torch: %g",
        worst_err(y, fixture_get(fx, "istft_out")));
  jbx_tensor *y60 = jbx_istft(spec, 16, 4, 12, 60);
  CHECK(worst_err(y60, fixture_get(fx, "istft_out60")) < 1e-5, "istft length 60 vs torch");
  /* past the last frame the window sum is zero: an error, as torch's "window overlap add min" */
  CHECK(jbx_istft(spec, 16, 4, 12, 80) == NULL, "istft past the frames accepted");
  CHECK_ERROR_HAS("istft: the window overlap-add is zero at output sample 70");
  /* with win = n_fft the window covers the end, and a longer length pads zeros (as torch) */
  jbx_tensor *y74 = jbx_istft(spec, 16, 4, 16, 74); /* frames cover 8 + 72 samples after trim */
  CHECK(y74 && y74->shape[1] == 74 && jbx_get(y74, 73) == 0.0 && jbx_get(y74, 72) == 0.0 &&
            jbx_get(y74, 71) != 0.0,
        "istft length 74 pads two zeros");
  jbx_release(y);
  jbx_release(y60);
  jbx_release(y74);

  /* round trips at every resolution, batched and 1-D */
  int res[5][3] = {{2048, 256, 1536}, {2048, 240, 1200}, {1024, 120, 600}, {512, 50, 240}, {16, 4, 12}};
  jbx_tensor *x = fixture_get(fx, "x");
  for (int i = 0; i < 5; i++) {
    jbx_tensor *s = jbx_stft(x, res[i][0], res[i][1], res[i][2]);
    jbx_tensor *r = jbx_istft(s, res[i][0], res[i][1], res[i][2], x->shape[1]);
    double e = 0;
    for (int64_t j = 0; r && j < jbx_numel(x); j++) e = fmax(e, fabs(jbx_get(r, j) - jbx_get(x, j)));
    CHECK(r && e < 1e-5, "istft(stft(x)) at %d/%d/%d: max error %g", res[i][0], res[i][1],
          res[i][2], e);
    jbx_release(s);
    jbx_release(r);
  }
  int64_t len = 50;
  jbx_rng rng;
  jbx_rng_seed(&rng, 9);
  jbx_tensor *x1 = jbx_randn(1, &len, &rng);
  jbx_tensor *s1 = jbx_stft(x1, 15, 3, 11);
  jbx_tensor *r1 = jbx_istft(s1, 15, 3, 11, 50);
  CHECK(r1 && r1->ndim == 1 && worst_err(r1, x1) < 1e-5, "1-D odd n_fft round trip");
  jbx_release(r1);
  jbx_release(s1);
  jbx_release(x1);
}

/* Big enough to run threaded: 1 and 3 threads give identical bits (each output sample
 * sums the same frames in the same order), on the two-phase overlap-add path and on the
 * rows-only path taken when win > (chunk + 1) * hop. */
static void test_threads(void) {
  int64_t shape[2] = {3, 6000};
  jbx_rng rng;
  jbx_rng_seed(&rng, 11);
  jbx_tensor *x = jbx_randn(2, shape, &rng);
  x->requires_grad = true;
  int cfg[2][3] = {{512, 50, 240}, {512, 4, 512}};
  int keep = omp_get_max_threads();
  for (int c = 0; c < 2; c++) {
    jbx_tensor *m[2], *gx[2], *rt[2];
    for (int k = 0; k < 2; k++) {
      omp_set_num_threads(k ? 3 : 1);
      m[k] = jbx_stft_mag(x, cfg[c][0], cfg[c][1], cfg[c][2]);
      jbx_tensor *g = probe(m[k]);
      jbx_backward(m[k], g);
      gx[k] = x->grad;
      x->grad = NULL;
      jbx_tensor *s = jbx_stft(x, cfg[c][0], cfg[c][1], cfg[c][2]);
      rt[k] = jbx_istft(s, cfg[c][0], cfg[c][1], cfg[c][2], 6000);
      jbx_release(s);
      jbx_release(g);
    }
    CHECK(worst_err(m[0], m[1]) == 0.0, "threads change magnitudes (%d/%d/%d)", cfg[c][0],
          cfg[c][1], cfg[c][2]);
    CHECK(worst_err(gx[0], gx[1]) == 0.0, "threads change the gradient (%d/%d/%d)", cfg[c][0],
          cfg[c][1], cfg[c][2]);
    CHECK(worst_err(rt[0], rt[1]) == 0.0 && worst_err(rt[1], x) < 1e-5,
          "threaded istft (%d/%d/%d)", cfg[c][0], cfg[c][1], cfg[c][2]);
    for (int k = 0; k < 2; k++) {
      jbx_release(m[k]);
      jbx_release(gx[k]);
      jbx_release(rt[k]);
    }
  }
  omp_set_num_threads(keep);
  jbx_release(x);
}

static void test_mel(fixture *fx) {
  jbx_tensor *fb = jbx_mel_filterbank(1024, 22050, 80, 0.0f, 0.0f);
  CHECK(fb && fb->ndim == 2 && fb->shape[0] == 80 && fb->shape[1] == 513, "mel shape");
  if (!fb) return;
  const int32_t *st = jbx_i32(fixture_get(fx, "mel_start")), *ct = jbx_i32(fixture_get(fx, "mel_count"));
  const float *v = jbx_f32(fixture_get(fx, "mel_vals")), *d = jbx_f32(fb);
  double w = 0;
  for (int m = 0, off = 0; m < 80; m++) {
    for (int k = 0; k < 513; k++) {
      double ref = (k >= st[m] && k < st[m] + ct[m]) ? v[off + k - st[m]] : 0.0;
      w = fmax(w, fabs(d[m * 513 + k] - ref));
    }
    off += ct[m];
  }
  CHECK(w < 1e-5, "mel filterbank vs reference: %g", w);
  jbx_tensor *fb2 = jbx_mel_filterbank(1024, 22050, 80, 0.0f, 11025.0f);
  CHECK(worst_err(fb, fb2) == 0.0, "fmax 0 means sample_rate/2");
  jbx_release(fb2);
  jbx_release(fb);
}

static void test_errors(void) {
  int64_t s3[3] = {2, 3, 100}, s2[2] = {2, 100}, s1 = 100;
  jbx_tensor *x3 = jbx_zeros(3, s3), *x = jbx_zeros(2, s2);
  int32_t ints[100] = {0};
  jbx_tensor *xi = jbx_from_ints(1, &s1, ints);

  CHECK(jbx_stft_mag(x3, 16, 4, 12) == NULL, "3-D input accepted");
  CHECK_ERROR_HAS("stft_mag: input [2, 3, 100] must be [L] or [B, L]");
  CHECK(jbx_stft(x3, 16, 4, 12) == NULL, "3-D input accepted by stft");
  CHECK_ERROR_HAS("stft: input [2, 3, 100] must be [L] or [B, L]");
  CHECK(jbx_stft_mag(x, 16, 0, 12) == NULL, "hop 0 accepted");
  CHECK_ERROR_HAS("stft_mag: hop 0 must be >= 1");
  CHECK(jbx_stft_mag(x, 16, 4, 17) == NULL, "win > n_fft accepted");
  CHECK_ERROR_HAS("stft_mag: win_length 17 must be in [1, n_fft 16]");
  CHECK(jbx_stft_mag(x, 16, 4, 0) == NULL, "win 0 accepted");
  CHECK_ERROR_HAS("win_length 0 must be in [1, n_fft 16]");
  CHECK(jbx_stft_mag(x, 1, 1, 1) == NULL, "n_fft 1 accepted");
  CHECK_ERROR_HAS("stft_mag: n_fft 1 must be >= 2");
  CHECK(jbx_stft_mag(xi, 16, 4, 12) == NULL, "int32 accepted");
  CHECK_ERROR_HAS("stft_mag: input [100] is int32, expected float32");
  CHECK(jbx_stft_mag(x, 2048, 256, 1536) == NULL, "short signal accepted");
  CHECK_ERROR_HAS("stft_mag: input [2, 100]: a signal of 100 samples is too short for reflect "
                  "padding by n_fft/2 = 1024 (n_fft 2048 needs at least 1025 samples)");
  CHECK(jbx_stft_mag(NULL, 16, 4, 12) == NULL, "NULL accepted");
  CHECK_ERROR_HAS("stft_mag: input is NULL");

  jbx_tensor *spec = jbx_stft(x, 16, 4, 12); /* [2, 9, 26, 2] */
  CHECK(jbx_istft(spec, 32, 4, 12, 0) == NULL, "istft bins mismatch accepted");
  CHECK_ERROR_HAS("istft: input [2, 9, 26, 2] has 9 bins, n_fft 32 needs 17");
  CHECK(jbx_istft(x, 16, 4, 12, 0) == NULL, "istft 2-D accepted");
  CHECK_ERROR_HAS("istft: input [2, 100] must be [bins, frames, 2] or [B, bins, frames, 2]");
  CHECK(jbx_istft(spec, 16, 0, 12, 0) == NULL, "istft hop 0 accepted");
  CHECK_ERROR_HAS("istft: hop 0 must be >= 1");
  CHECK(jbx_istft(spec, 16, 13, 12, 0) == NULL, "istft with gaps accepted");
  CHECK_ERROR_HAS("istft: the window overlap-add is zero at output sample");
  int64_t si[4] = {1, 9, 3, 2};
  int32_t zi[54] = {0};
  jbx_tensor *speci = jbx_from_ints(4, si, zi);
  CHECK(jbx_istft(speci, 16, 4, 12, 0) == NULL, "istft int32 accepted");
  CHECK_ERROR_HAS("istft: input [1, 9, 3, 2] is int32, expected float32");

  CHECK(jbx_mel_filterbank(1024, 22050, 0, 0, 0) == NULL, "0 mels accepted");
  CHECK_ERROR_HAS("mel_filterbank: n_mels 0 must be >= 1");
  CHECK(jbx_mel_filterbank(1, 22050, 80, 0, 0) == NULL, "n_fft 1 accepted");
  CHECK_ERROR_HAS("mel_filterbank: n_fft 1 must be >= 2");
  CHECK(jbx_mel_filterbank(1024, 0, 80, 0, 0) == NULL, "rate 0 accepted");
  CHECK_ERROR_HAS("mel_filterbank: sample_rate 0 must be >= 1");
  CHECK(jbx_mel_filterbank(1024, 22050, 80, 5000, 4000) == NULL, "fmin > fmax accepted");
  CHECK_ERROR_HAS("mel_filterbank: need 0 <= fmin < fmax, got fmin 5000, fmax 4000");
  jbx_release(speci);
  jbx_release(spec);
  jbx_release(xi);
  jbx_release(x);
  jbx_release(x3);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* stft_mag forward + backward, B = 4 x 22050 samples, at the multispectral resolutions.
 * Reports the best of 20 runs (the machine may be shared) and the mean. */
static void bench(void) {
  int res[4][3] = {{2048, 240, 1200}, {1024, 120, 600}, {512, 50, 240}, {2048, 256, 1536}};
  int64_t shape[2] = {4, 22050};
  jbx_rng rng;
  jbx_rng_seed(&rng, 3);
  jbx_tensor *x = jbx_randn(2, shape, &rng);
  x->requires_grad = true;
  printf("bench: stft_mag B=4 x 22050 samples, %d threads; best (mean) of 20, ms\n",
         omp_get_max_threads());
  for (int i = 0; i < 4; i++) {
    int reps = 20;
    double tf = 0, tb = 0, tc = 0, bf = 1e9, bb = 1e9, bc = 1e9;
    for (int r = -2; r < reps; r++) { /* two warm-up runs */
      double t0 = now();
      jbx_tensor *m = jbx_stft_mag(x, res[i][0], res[i][1], res[i][2]);
      double t1 = now();
      jbx_tensor *g = jbx_full(m->ndim, m->shape, 1.0f);
      double t2 = now();
      jbx_backward(m, g);
      double t3 = now();
      /* jbx_backward first copies the seed into mag's grad: not this op's work */
      jbx_tensor *c = jbx_clone(g);
      double t4 = now();
      if (r >= 0) {
        tf += t1 - t0, tb += t3 - t2, tc += t4 - t3;
        bf = fmin(bf, t1 - t0), bb = fmin(bb, t3 - t2), bc = fmin(bc, t4 - t3);
      }
      jbx_release(c);
      jbx_release(g);
      jbx_release(m);
      jbx_zero_grad(x);
    }
    printf("  %4d/%3d/%4d: forward %.2f (%.2f), backward %.2f (%.2f), fwd+bwd %.2f (%.2f); "
           "a copy of the seed takes %.2f (%.2f)\n",
           res[i][0], res[i][1], res[i][2], 1e3 * bf, 1e3 * tf / reps, 1e3 * bb, 1e3 * tb / reps,
           1e3 * (bf + bb), 1e3 * (tf + tb) / reps, 1e3 * bc, 1e3 * tc / reps);
  }
  jbx_release(x);
}

int main(void) {
  fixture *fx = fixture_load("tests/fixtures/stft.fix");
  CHECK(fx != NULL, "cannot load tests/fixtures/stft.fix");
  if (fx) {
    test_fixtures(fx);
    test_strided_and_layout(fx);
    test_istft(fx);
    test_mel(fx);
  }
  test_threads();
  test_zero_signal();
  test_errors();
  fixture_free(fx);
  const char *b = getenv("JBX_STFT_BENCH");
  if (b && *b && *b != '0') bench();
  return check_summary();
}
