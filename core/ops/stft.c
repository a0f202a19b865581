/* STFT, its magnitude (with backward) and the inverse STFT on FFTW single precision.
 *
 * Frames are transformed a chunk at a time (about 64 KB of scratch) with cached
 * fftwf_plan_many_dft_r2c/c2r plans, executed with FFTW's new-array functions on
 * per-thread scratch so OpenMP threads share one plan. Scratch slots are padded to 64
 * bytes so the one-frame plan used for a row's last chunk runs on any slot (new-array
 * execute needs the planning arrays' alignment). Nothing is allocated per frame.
 *
 * Plans use FFTW_ESTIMATE: creating one takes about a millisecond and never touches
 * data, and the algorithm chosen is the same on every run, so results are
 * bit-reproducible. FFTW_MEASURE chooses by timing: 0.3-0.8 s per plan (four plans per
 * n_fft), results that may change by an ulp between runs, and no measurable speed-up
 * on Jukebox's sizes (about 1-4 us per frame either way at n_fft 512-2048).
 *
 * The magnitude's backward recomputes the spectrum instead of saving it: an FFT is
 * cheaper than writing and rereading [B, frames, bins, 2] floats, and the graph stays small. */
#include "jbx_stft.h"

#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "jbx_error.h"
#include "jbx_tensor.h"
#include "op_kit.h"

#define JBX_PI 3.14159265358979323846
#define PAR_MIN_WORK 65536 /* samples of FFT input below which threads cost more than they give */

/* ---- plan cache ---- */

enum { PLAN_R2C, PLAN_C2R };

typedef struct {
  int n, kind, howmany;
  fftwf_plan plan;
} plan_entry;

#define PLAN_CACHE_MAX 128
static plan_entry plan_cache[PLAN_CACHE_MAX];
static int plan_count;
/* FFTW's planner is not thread-safe; execute is. Plans live until exit (never freed,
 * so a thread can never lose one it is executing). */
static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;

static int64_t real_stride(int n) { return ((int64_t)n + 15) / 16 * 16; }          /* floats */
static int64_t cplx_stride(int n) { return ((int64_t)n / 2 + 1 + 7) / 8 * 8; } /* complexes */

static fftwf_plan get_plan(const char *op, int n, int kind, int howmany) {
  fftwf_plan p = NULL;
  pthread_mutex_lock(&plan_lock);
  for (int i = 0; i < plan_count; i++)
    if (plan_cache[i].n == n && plan_cache[i].kind == kind && plan_cache[i].howmany == howmany) {
      p = plan_cache[i].plan;
      break;
    }
  if (!p) {
    if (plan_count == PLAN_CACHE_MAX) {
      pthread_mutex_unlock(&plan_lock);
      jbx_fail("%s: FFT plan cache full (%d plans): too many distinct n_fft sizes", op,
               PLAN_CACHE_MAX);
      return NULL;
    }
    int64_t rs = real_stride(n), cs = cplx_stride(n);
    float *r = fftwf_malloc(sizeof(float) * (size_t)(rs * howmany));
    fftwf_complex *c = fftwf_malloc(sizeof(fftwf_complex) * (size_t)(cs * howmany));
    if (r && c) {
      int dims[1] = {n};
      p = kind == PLAN_R2C
              ? fftwf_plan_many_dft_r2c(1, dims, howmany, r, NULL, 1, (int)rs, c, NULL, 1, (int)cs,
                                        FFTW_ESTIMATE)
              : fftwf_plan_many_dft_c2r(1, dims, howmany, c, NULL, 1, (int)cs, r, NULL, 1, (int)rs,
                                        FFTW_ESTIMATE);
    }
    fftwf_free(r);
    fftwf_free(c);
    if (p) plan_cache[plan_count++] = (plan_entry){n, kind, howmany, p};
  }
  pthread_mutex_unlock(&plan_lock);
  if (!p) jbx_fail("%s: could not create an FFTW plan for n_fft %d", op, n);
  return p;
}

/* ---- geometry and validation ---- */

typedef struct {
  int n_fft, hop, win, left, pad, bins;
  int64_t B, L, Lp, F;
  int batched;
} geom;

static int check_params(const char *op, int n_fft, int hop, int win) {
  if (n_fft < 2) return jbx_fail("%s: n_fft %d must be >= 2", op, n_fft);
  if (hop < 1) return jbx_fail("%s: hop %d must be >= 1", op, hop);
  if (win < 1 || win > n_fft)
    return jbx_fail("%s: win_length %d must be in [1, n_fft %d]", op, win, n_fft);
  return 0;
}

static int make_geom(const char *op, const jbx_tensor *x, int n_fft, int hop, int win, geom *g) {
  char s[160];
  if (!x) return jbx_fail("%s: input is NULL", op);
  if (x->dtype != JBX_F32)
    return jbx_fail("%s: input %s is int32, expected float32", op, jbx_shape_str(x, s, sizeof s));
  if (x->ndim != 1 && x->ndim != 2)
    return jbx_fail("%s: input %s must be [L] or [B, L]", op, jbx_shape_str(x, s, sizeof s));
  if (check_params(op, n_fft, hop, win)) return -1;
  g->n_fft = n_fft;
  g->hop = hop;
  g->win = win;
  g->left = (n_fft - win) / 2;
  g->pad = n_fft / 2;
  g->bins = n_fft / 2 + 1;
  g->batched = x->ndim == 2;
  g->B = g->batched ? x->shape[0] : 1;
  g->L = x->shape[x->ndim - 1];
  /* reflect padding (as torch) needs pad < L */
  if (g->L <= g->pad)
    return jbx_fail("%s: input %s: a signal of %lld samples is too short for reflect padding by "
                    "n_fft/2 = %d (n_fft %d needs at least %d samples)",
                    op, jbx_shape_str(x, s, sizeof s), (long long)g->L, g->pad, n_fft, g->pad + 1);
  g->Lp = g->L + 2 * (int64_t)g->pad;
  g->F = 1 + (g->Lp - n_fft) / hop;
  return 0;
}

static void hann_padded(float *w, int n_fft, int win) {
  int left = (n_fft - win) / 2;
  for (int i = 0; i < n_fft; i++) w[i] = 0.0f;
  for (int i = 0; i < win; i++)
    w[left + i] = win == 1 ? 1.0f : (float)(0.5 - 0.5 * cos(2.0 * JBX_PI * i / win));
}

jbx_tensor *jbx_stft_window(int n_fft, int win_length) {
  if (check_params("stft_window", n_fft, 1, win_length)) return NULL;
  int64_t n = n_fft;
  jbx_tensor *w = jbx_empty(JBX_F32, 1, &n);
  if (w) hann_padded(jbx_f32(w), n_fft, win_length);
  return w;
}

/* Index into x of padded position j (reflect, excluding the edge sample). */
static int64_t reflect_index(int64_t j, int64_t pad, int64_t L) {
  int64_t i = j - pad;
  if (i < 0) return -i;
  if (i >= L) return 2 * (L - 1) - i;
  return i;
}

/* ---- per-thread work ---- */

/* Frames per FFTW call: about 64 KB of real scratch per buffer, so the scratch stays in
 * L2 and under malloc's mmap threshold (no page faults on every call). */
static int chunk_frames(int n) {
  int64_t h = 16384 / real_stride(n);
  return (int)(h < 1 ? 1 : h > 64 ? 64 : h);
}

typedef struct {
  const geom *g;
  const float *w;        /* padded window [n_fft] */
  int hm;                /* frames per chunk */
  int64_t nchunks;       /* per batch row */
  fftwf_plan r2c_hm, r2c_1, c2r_hm, c2r_1;
  const float *x;        /* [B, L] contiguous (forward, backward) */
  const float *gin;      /* [B, bins, F]: gradient of the magnitudes (backward) */
  const float *spec;     /* [B, bins, F, 2] (istft) */
  float *mag, *cspec;    /* forward outputs, either may be NULL */
  float *acc;            /* [B, acc_len] overlap-add target (backward, istft) */
  int64_t acc_len;
  float scale;           /* applied to the c2r output (istft: 1 / n_fft) */
} run_ctx;

typedef struct {
  float *r, *ro;
  fftwf_complex *c;
} scratch;

static int scratch_alloc(scratch *s, const run_ctx *rc) {
  size_t nr = (size_t)(real_stride(rc->g->n_fft) * rc->hm);
  size_t nc = (size_t)(cplx_stride(rc->g->n_fft) * rc->hm);
  s->r = fftwf_malloc(sizeof(float) * nr);
  s->ro = fftwf_malloc(sizeof(float) * nr);
  s->c = fftwf_malloc(sizeof(fftwf_complex) * nc);
  if (s->r) memset(s->r, 0, sizeof(float) * nr); /* zeros outside the window stay zero */
  return s->r && s->ro && s->c ? 0 : -1;
}

static void scratch_free(scratch *s) {
  fftwf_free(s->r);
  fftwf_free(s->ro);
  fftwf_free(s->c);
}

/* Windowed frames t0 .. t0+nt-1 of row b into the real scratch (window region only),
 * reading the reflect-padded signal without building it. */
static void fill_frames(const run_ctx *rc, int64_t b, int64_t t0, int nt, float *r) {
  const geom *g = rc->g;
  const int64_t rs = real_stride(g->n_fft), L = g->L;
  const float *xb = rc->x + b * L, *wl = rc->w + g->left;
  for (int j = 0; j < nt; j++) {
    float *dst = r + j * rs + g->left;
    int64_t p0 = (t0 + j) * g->hop + g->left, s0 = p0 - g->pad; /* padded / signal index */
    if (s0 >= 0 && s0 + g->win <= L) {
      const float *src = xb + s0;
      for (int n = 0; n < g->win; n++) dst[n] = wl[n] * src[n];
    } else {
      for (int n = 0; n < g->win; n++) dst[n] = wl[n] * xb[reflect_index(p0 + n, g->pad, L)];
    }
  }
}

static void r2c(const run_ctx *rc, int nt, float *r, fftwf_complex *c) {
  if (nt == rc->hm) {
    fftwf_execute_dft_r2c(rc->r2c_hm, r, c);
  } else {
    int64_t rs = real_stride(rc->g->n_fft), cs = cplx_stride(rc->g->n_fft);
    for (int j = 0; j < nt; j++) fftwf_execute_dft_r2c(rc->r2c_1, r + j * rs, c + j * cs);
  }
}

static void c2r(const run_ctx *rc, int nt, fftwf_complex *c, float *r) {
  if (nt == rc->hm) {
    fftwf_execute_dft_c2r(rc->c2r_hm, c, r);
  } else {
    int64_t rs = real_stride(rc->g->n_fft), cs = cplx_stride(rc->g->n_fft);
    for (int j = 0; j < nt; j++) fftwf_execute_dft_c2r(rc->c2r_1, c + j * cs, r + j * rs);
  }
}

/* Adds scale * window * frame for frames t0.. into rc->acc (padded coordinates). */
static void overlap_add(const run_ctx *rc, int64_t b, int64_t t0, int nt, const float *ro) {
  const geom *g = rc->g;
  const int64_t rs = real_stride(g->n_fft);
  const float *wl = rc->w + g->left;
  for (int j = 0; j < nt; j++) {
    float *dst = rc->acc + b * rc->acc_len + (t0 + j) * g->hop + g->left;
    const float *src = ro + j * rs + g->left;
    for (int n = 0; n < g->win; n++) dst[n] += rc->scale * wl[n] * src[n];
  }
}

typedef void (*chunk_fn)(const run_ctx *rc, int64_t b, int64_t t0, int nt, scratch *s);

/* Runs fn over every chunk of every row with OpenMP. When fn overlap-adds, chunks of a row
 * overlap in the output, so even and odd chunks run in two phases: chunks two apart never
 * share a sample when win <= (hm + 1) * hop (Jukebox's win/hop <= 6); otherwise only rows
 * run in parallel. Returns -1 (with a message) if scratch could not be allocated. */
static int run_chunks(const char *op, const run_ctx *rc, chunk_fn fn, bool overlaps) {
  const geom *g = rc->g;
  const int64_t B = g->B, nch = rc->nchunks;
  const bool phases = !overlaps || g->win <= (int64_t)(rc->hm + 1) * g->hop;
  int failed = 0;
#pragma omp parallel if (B * g->F * g->n_fft > PAR_MIN_WORK)
  {
    scratch s;
    int ok = scratch_alloc(&s, rc) == 0;
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
    if (phases) {
      for (int parity = 0; parity < (overlaps ? 2 : 1); parity++) {
#pragma omp for schedule(static)
        for (int64_t task = 0; task < B * nch; task++) {
          int64_t b = task / nch, ci = task % nch;
          if (!ok || (overlaps && (ci & 1) != parity)) continue;
          int64_t t0 = ci * rc->hm;
          fn(rc, b, t0, (int)(g->F - t0 < rc->hm ? g->F - t0 : rc->hm), &s);
        }
      }
    } else {
#pragma omp for schedule(static)
      for (int64_t b = 0; b < B; b++)
        for (int64_t ci = 0; ok && ci < nch; ci++) {
          int64_t t0 = ci * rc->hm;
          fn(rc, b, t0, (int)(g->F - t0 < rc->hm ? g->F - t0 : rc->hm), &s);
        }
    }
    scratch_free(&s);
  }
  return failed ? jbx_fail("%s: out of memory for FFT scratch", op) : 0;
}

static int setup(const char *op, run_ctx *rc, const geom *g, float *w, bool fwd, bool inv) {
  memset(rc, 0, sizeof *rc);
  rc->g = g;
  rc->w = w;
  rc->hm = chunk_frames(g->n_fft);
  rc->nchunks = (g->F + rc->hm - 1) / rc->hm;
  rc->scale = 1.0f;
  hann_padded(w, g->n_fft, g->win);
  if (fwd && (!(rc->r2c_hm = get_plan(op, g->n_fft, PLAN_R2C, rc->hm)) ||
              !(rc->r2c_1 = get_plan(op, g->n_fft, PLAN_R2C, 1))))
    return -1;
  if (inv && (!(rc->c2r_hm = get_plan(op, g->n_fft, PLAN_C2R, rc->hm)) ||
              !(rc->c2r_1 = get_plan(op, g->n_fft, PLAN_C2R, 1))))
    return -1;
  return 0;
}

/* ---- forward ---- */

static void forward_chunk(const run_ctx *rc, int64_t b, int64_t t0, int nt, scratch *s) {
  const geom *g = rc->g;
  const int64_t F = g->F, cs = cplx_stride(g->n_fft);
  const int bins = g->bins;
  fill_frames(rc, b, t0, nt, s->r);
  r2c(rc, nt, s->r, s->c);
  /* frames are rows of the scratch, bins rows of the output: write runs of nt frames */
  if (rc->mag)
    for (int k = 0; k < bins; k++) {
      float *o = rc->mag + (b * bins + k) * F + t0;
      for (int j = 0; j < nt; j++) {
        float re = s->c[j * cs + k][0], im = s->c[j * cs + k][1];
        o[j] = sqrtf(re * re + im * im);
      }
    }
  if (rc->cspec)
    for (int k = 0; k < bins; k++) {
      float *o = rc->cspec + ((b * bins + k) * F + t0) * 2;
      for (int j = 0; j < nt; j++) {
        o[2 * j] = s->c[j * cs + k][0];
        o[2 * j + 1] = s->c[j * cs + k][1];
      }
    }
}

/* ---- backward of the magnitude ---- */

/* d sum(g * |X|) / d frame. Per frame: Y_k = g_k X_k / |X_k| (0 where |X_k| = 0), and the
 * adjoint of the onesided r2c is sum_k Re(Y_k e^{+2 pi i k n / N}) = c2r(Z) with Z_k = Y_k
 * for DC and Nyquist and Y_k / 2 for the bins c2r counts twice (their Hermitian mirror).
 * X is recomputed here (an FFT costs less than storing and reloading it). */
static void backward_chunk(const run_ctx *rc, int64_t b, int64_t t0, int nt, scratch *s) {
  const geom *g = rc->g;
  const int64_t F = g->F, cs = cplx_stride(g->n_fft);
  const int bins = g->bins, N = g->n_fft;
  fill_frames(rc, b, t0, nt, s->r);
  r2c(rc, nt, s->r, s->c);
  for (int k = 0; k < bins; k++) {
    const float *gk = rc->gin + (b * bins + k) * F + t0;
    const float half = (k != 0 && 2 * k != N) ? 0.5f : 1.0f;
    for (int j = 0; j < nt; j++) {
      float *z = s->c[j * cs + k];
      float re = z[0], im = z[1], m = sqrtf(re * re + im * im);
      float f = m > 0.0f ? half * gk[j] / m : 0.0f;
      z[0] = f * re;
      z[1] = f * im;
    }
  }
  c2r(rc, nt, s->c, s->ro);
  overlap_add(rc, b, t0, nt, s->ro);
}

typedef struct {
  int n_fft, hop, win_length;
} stft_params;

/* Then the frame gradients times the window are overlap-added in padded coordinates
 * and the reflect padding is folded back onto x. */
static int stft_mag_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  (void)out;
  jbx_tensor *x = nd->in[0];
  if (!x->requires_grad) return 0;
  const char *op = "stft_mag backward";
  geom g;
  const stft_params *p = JBX_NODE_PARAMS(nd, stft_params);
  if (make_geom(op, x, p->n_fft, p->hop, p->win_length, &g)) return -1;
  run_ctx rc;
  float *w = malloc(sizeof(float) * (size_t)g.n_fft);
  if (!w) return jbx_fail("%s: out of memory", op);
  if (setup(op, &rc, &g, w, true, true)) {
    free(w);
    return -1;
  }
  jbx_tensor *gc = jbx_plain(gout), *xc = jbx_plain(x);
  float *acc = calloc((size_t)(g.B * g.Lp), sizeof(float));
  int64_t shape[2] = {g.B, g.L};
  jbx_tensor *dx = g.batched ? jbx_zeros(2, shape) : jbx_zeros(1, &g.L);
  int rcode = -1;
  if (!gc || !xc || !acc || !dx) {
    if (gc && xc && dx) jbx_fail("%s: out of memory", op);
  } else {
    rc.x = jbx_f32(xc);
    rc.gin = jbx_f32(gc);
    rc.acc = acc;
    rc.acc_len = g.Lp;
    rcode = run_chunks(op, &rc, backward_chunk, true);
  }
  if (rcode == 0) {
    float *dd = jbx_f32(dx);
    for (int64_t b = 0; b < g.B; b++)
      for (int64_t j = 0; j < g.Lp; j++)
        dd[b * g.L + reflect_index(j, g.pad, g.L)] += acc[b * g.Lp + j];
    rcode = jbx_accum_grad(x, dx);
  }
  free(w);
  free(acc);
  jbx_release(dx);
  jbx_release(gc);
  jbx_release(xc);
  return rcode;
}

static int stft_common(const char *op, jbx_tensor *x, const geom *g, float *mag, float *cspec) {
  run_ctx rc;
  float *w = malloc(sizeof(float) * (size_t)g->n_fft);
  if (!w) return jbx_fail("%s: out of memory", op);
  int rcode = setup(op, &rc, g, w, true, false);
  jbx_tensor *xc = rcode ? NULL : jbx_plain(x);
  if (xc) {
    rc.x = jbx_f32(xc);
    rc.mag = mag;
    rc.cspec = cspec;
    rcode = run_chunks(op, &rc, forward_chunk, false);
  } else {
    rcode = -1;
  }
  jbx_release(xc);
  free(w);
  return rcode;
}

jbx_tensor *jbx_stft_mag(jbx_tensor *x, int n_fft, int hop, int win_length) {
  const char *op = "stft_mag";
  geom g = {0};
  if (make_geom(op, x, n_fft, hop, win_length, &g)) return NULL;
  int64_t shape[3] = {g.B, g.bins, g.F};
  jbx_tensor *out = g.batched ? jbx_empty(JBX_F32, 3, shape) : jbx_empty(JBX_F32, 2, shape + 1);
  if (!out || stft_common(op, x, &g, jbx_f32(out), NULL)) {
    jbx_release(out);
    return NULL;
  }
  stft_params p = {n_fft, hop, win_length};
  JBX_RECORD(out, "stft_mag", stft_mag_backward, 1, &x, p);
  return out;
}

jbx_tensor *jbx_stft(jbx_tensor *x, int n_fft, int hop, int win_length) {
  const char *op = "stft";
  geom g = {0};
  if (make_geom(op, x, n_fft, hop, win_length, &g)) return NULL;
  int64_t shape[4] = {g.B, g.bins, g.F, 2};
  jbx_tensor *out = g.batched ? jbx_empty(JBX_F32, 4, shape) : jbx_empty(JBX_F32, 3, shape + 1);
  if (!out || stft_common(op, x, &g, NULL, jbx_f32(out))) {
    jbx_release(out);
    return NULL;
  }
  return out;
}

/* ---- inverse ---- */

static void istft_chunk(const run_ctx *rc, int64_t b, int64_t t0, int nt, scratch *s) {
  const geom *g = rc->g;
  const int64_t F = g->F, cs = cplx_stride(g->n_fft);
  const int bins = g->bins;
  for (int k = 0; k < bins; k++) {
    const float *src = rc->spec + ((b * bins + k) * F + t0) * 2;
    for (int j = 0; j < nt; j++) {
      s->c[j * cs + k][0] = src[2 * j];
      s->c[j * cs + k][1] = src[2 * j + 1];
    }
  }
  c2r(rc, nt, s->c, s->ro);
  overlap_add(rc, b, t0, nt, s->ro);
}

jbx_tensor *jbx_istft(jbx_tensor *spec, int n_fft, int hop, int win_length, int64_t length) {
  const char *op = "istft";
  char s[160];
  if (!spec) return jbx_fail("%s: input is NULL", op), NULL;
  if (spec->dtype != JBX_F32)
    return jbx_fail("%s: input %s is int32, expected float32", op,
                    jbx_shape_str(spec, s, sizeof s)),
           NULL;
  if ((spec->ndim != 3 && spec->ndim != 4) || spec->shape[spec->ndim - 1] != 2)
    return jbx_fail("%s: input %s must be [bins, frames, 2] or [B, bins, frames, 2]", op,
                    jbx_shape_str(spec, s, sizeof s)),
           NULL;
  if (check_params(op, n_fft, hop, win_length)) return NULL;
  geom g = {.n_fft = n_fft, .hop = hop, .win = win_length};
  g.left = (n_fft - win_length) / 2;
  g.pad = n_fft / 2;
  g.bins = n_fft / 2 + 1;
  g.batched = spec->ndim == 4;
  g.B = g.batched ? spec->shape[0] : 1;
  g.F = spec->shape[spec->ndim - 2];
  if (spec->shape[spec->ndim - 3] != g.bins)
    return jbx_fail("%s: input %s has %lld bins, n_fft %d needs %d", op,
                    jbx_shape_str(spec, s, sizeof s), (long long)spec->shape[spec->ndim - 3], n_fft,
                    g.bins),
           NULL;
  if (g.F < 1) return jbx_fail("%s: input %s has no frames", op, jbx_shape_str(spec, s, sizeof s)), NULL;
  const int64_t B = g.B, F = g.F;
  const int64_t full = n_fft + (int64_t)hop * (F - 1), start = g.pad;
  const int64_t out_len = length >= 1 ? length : full - 2 * (int64_t)g.pad;
  const int64_t avail = full - start < out_len ? full - start : out_len; /* the rest is zeros */
  if (out_len < 1)
    return jbx_fail("%s: %lld frames at hop %d give no samples after trimming n_fft/2 = %d", op,
                    (long long)F, hop, g.pad),
           NULL;

  run_ctx rc;
  float *w = malloc(sizeof(float) * (size_t)n_fft);
  float *env = calloc((size_t)full, sizeof(float));
  float *y = calloc((size_t)(B * full), sizeof(float));
  int64_t shape[2] = {B, out_len};
  jbx_tensor *out = g.batched ? jbx_zeros(2, shape) : jbx_zeros(1, &out_len);
  jbx_tensor *sc = jbx_contiguous(spec);
  jbx_tensor *result = NULL;
  if (!w || !env || !y || !out || !sc) {
    if (!w || !env || !y) jbx_fail("%s: out of memory", op);
    goto done;
  }
  if (setup(op, &rc, &g, w, false, true)) goto done;
  for (int64_t t = 0; t < F; t++)
    for (int n = g.left; n < g.left + win_length; n++) env[t * hop + n] += w[n] * w[n];
  for (int64_t i = 0; i < avail; i++)
    if (!(fabsf(env[start + i]) >= 1e-11f)) {
      jbx_fail("%s: the window overlap-add is zero at output sample %lld (n_fft %d, hop %d, "
               "win_length %d): the hop leaves gaps between windows",
               op, (long long)i, n_fft, hop, win_length);
      goto done;
    }
  rc.spec = jbx_f32(sc);
  rc.acc = y;
  rc.acc_len = full;
  rc.scale = 1.0f / (float)n_fft; /* c2r is unnormalised */
  if (run_chunks(op, &rc, istft_chunk, true)) goto done;
  float *od = jbx_f32(out);
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < avail; i++) od[b * out_len + i] = y[b * full + start + i] / env[start + i];
  result = out;
  out = NULL;
done:
  free(w);
  free(env);
  free(y);
  jbx_release(out);
  jbx_release(sc);
  return result;
}

/* ---- mel filterbank ---- */

static double hz_to_mel(double f) { return 2595.0 * log10(1.0 + f / 700.0); }
static double mel_to_hz(double m) { return 700.0 * (pow(10.0, m / 2595.0) - 1.0); }

jbx_tensor *jbx_mel_filterbank(int n_fft, int sample_rate, int n_mels, float fmin, float fmax) {
  const char *op = "mel_filterbank";
  if (n_fft < 2) return jbx_fail("%s: n_fft %d must be >= 2", op, n_fft), NULL;
  if (sample_rate < 1) return jbx_fail("%s: sample_rate %d must be >= 1", op, sample_rate), NULL;
  if (n_mels < 1) return jbx_fail("%s: n_mels %d must be >= 1", op, n_mels), NULL;
  double top = (double)(sample_rate / 2), lo = fmin, hi = fmax > 0.0f ? fmax : top;
  if (!(lo >= 0.0) || !(hi > lo))
    return jbx_fail("%s: need 0 <= fmin < fmax, got fmin %g, fmax %g", op, lo, hi), NULL;
  int bins = n_fft / 2 + 1;
  int64_t shape[2] = {n_mels, bins};
  jbx_tensor *fb = jbx_empty(JBX_F32, 2, shape);
  double *pts = malloc(sizeof(double) * (size_t)(n_mels + 2));
  if (!fb || !pts) {
    free(pts);
    jbx_release(fb);
    return jbx_fail("%s: out of memory", op), NULL;
  }
  double m0 = hz_to_mel(lo), m1 = hz_to_mel(hi);
  for (int i = 0; i < n_mels + 2; i++) pts[i] = mel_to_hz(m0 + (m1 - m0) * i / (n_mels + 1));
  float *d = jbx_f32(fb);
  for (int m = 0; m < n_mels; m++)
    for (int k = 0; k < bins; k++) {
      double f = top * k / (bins - 1);
      double down = (f - pts[m]) / (pts[m + 1] - pts[m]);
      double up = (pts[m + 2] - f) / (pts[m + 2] - pts[m + 1]);
      double v = down < up ? down : up;
      d[(int64_t)m * bins + k] = (float)(v > 0.0 ? v : 0.0);
    }
  free(pts);
  return fb;
}
