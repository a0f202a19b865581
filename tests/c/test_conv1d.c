/* conv1d and conv_transpose1d: PyTorch fixtures (outputs and every gradient), a direct
 * double-precision reference on shapes that take each batching path of the GEMM engine,
 * strided inputs, and every error message (gradient checks: rows of op_table.h). */
#include <stdlib.h>

#include "check.h"
#include "fixture.h"
#include "gradcheck.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_rng.h"

/* ------------------------------------------------------------ helpers */

/* Largest |a - ref| / (1 + |ref|) over all elements (a read through its strides). */
static double max_err(const jbx_tensor *a, const double *ref, int64_t n) {
  if (n == 0) return 0; /* empty: nothing to compare (an empty input gets no gradient) */
  if (!a || jbx_numel(a) != n) return 1e9;
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs(jbx_get(a, i) - ref[i]) / (1.0 + fabs(ref[i]));
    if (e > worst) worst = e;
  }
  return worst;
}

static double max_err_t(const jbx_tensor *a, const jbx_tensor *ref) {
  if (!a || !ref || !jbx_same_shape(a, ref)) return 1e9;
  int64_t n = jbx_numel(ref);
  double *r = malloc((size_t)n * sizeof *r);
  for (int64_t i = 0; i < n; i++) r[i] = jbx_get(ref, i);
  double e = max_err(a, r, n);
  free(r);
  return e;
}

static jbx_tensor *leaf_copy(const jbx_tensor *t) {
  jbx_tensor *c = jbx_from_floats(t->ndim, t->shape, jbx_f32(t));
  c->requires_grad = true;
  return c;
}

static jbx_tensor *randn3(int64_t a, int64_t b, int64_t c, float scale, uint64_t seed) {
  int64_t shape[3] = {a, b, c};
  return gradcheck_input(3, shape, scale, seed);
}

static jbx_tensor *randn1(int64_t a, float scale, uint64_t seed) {
  int64_t shape[1] = {a};
  return gradcheck_input(1, shape, scale, seed);
}

/* ------------------------------------------------------- PyTorch fixtures */

typedef struct {
  const char *name;
  int transposed, stride, padding, extra; /* extra: dilation, or output_padding */
} fix_case;

static const fix_case FIX_CASES[] = {
    {"c1", 0, 1, 1, 1}, {"c2", 0, 2, 1, 1}, {"c3", 0, 1, 3, 3}, {"c4", 0, 1, 0, 1},
    {"c5", 0, 2, 0, 2}, {"t1", 1, 2, 1, 0}, {"t2", 1, 2, 1, 1}, {"t3", 1, 1, 0, 0},
};

static jbx_tensor *fix_get(fixture *fx, const char *c, const char *part, int quiet) {
  char name[64];
  snprintf(name, sizeof name, "%s_%s", c, part);
  for (int i = 0; fx && i < fx->n; i++)
    if (strcmp(fx->names[i], name) == 0) return fx->arrays[i];
  if (!quiet) fprintf(stderr, "fixture: no array '%s'\n", name);
  return NULL;
}

static void test_fixtures(void) {
  fixture *fx = fixture_load("tests/fixtures/conv.fix");
  CHECK(fx != NULL, "tests/fixtures/conv.fix loads (make it with tools/fixtures/conv.py)");
  if (!fx) return;
  for (size_t i = 0; i < sizeof FIX_CASES / sizeof FIX_CASES[0]; i++) {
    const fix_case *fc = &FIX_CASES[i];
    jbx_tensor *fb = fix_get(fx, fc->name, "b", 1);
    jbx_tensor *x = leaf_copy(fix_get(fx, fc->name, "x", 0));
    jbx_tensor *w = leaf_copy(fix_get(fx, fc->name, "w", 0));
    jbx_tensor *b = fb ? leaf_copy(fb) : NULL;
    jbx_tensor *out = fc->transposed
                          ? jbx_conv_transpose1d(x, w, b, fc->stride, fc->padding, fc->extra)
                          : jbx_conv1d(x, w, b, fc->stride, fc->padding, fc->extra);
    CHECK(out != NULL, "%s: %s", fc->name, jbx_last_error());
    if (out) {
      double e = max_err_t(out, fix_get(fx, fc->name, "out", 0));
      CHECK(e < 1e-4, "%s forward: error %.3g", fc->name, e);
      CHECK(jbx_backward(out, fix_get(fx, fc->name, "g", 0)) == 0, "%s backward: %s", fc->name,
            jbx_last_error());
      e = max_err_t(x->grad, fix_get(fx, fc->name, "gx", 0));
      CHECK(e < 1e-4, "%s grad x: error %.3g", fc->name, e);
      e = max_err_t(w->grad, fix_get(fx, fc->name, "gw", 0));
      CHECK(e < 1e-4, "%s grad w: error %.3g", fc->name, e);
      if (b) {
        e = max_err_t(b->grad, fix_get(fx, fc->name, "gb", 0));
        CHECK(e < 1e-4, "%s grad bias: error %.3g", fc->name, e);
      }
    }
    jbx_release(out);
    jbx_release(x);
    jbx_release(w);
    jbx_release(b);
  }
  fixture_free(fx);
}

/* ------------------------------------------- direct reference in double */

typedef struct {
  int transposed;
  int64_t B, cin, cout, L, K;
  int stride, padding, extra; /* extra: dilation, or output_padding */
  int bias;
} conv_case;

static int64_t ref_out_len(const conv_case *c) {
  if (c->transposed) return (c->L - 1) * c->stride - 2 * c->padding + c->K + c->extra;
  return (c->L + 2 * c->padding - c->extra * (c->K - 1) - 1) / c->stride + 1;
}

/* Visits every (input position, output position, weight index) product of the op. */
#define FOR_EACH_TAP(c, Lo, body)                                                       \
  for (int64_t b_ = 0; b_ < (c)->B; b_++)                                               \
    for (int64_t o_ = 0; o_ < (c)->cout; o_++)                                          \
      for (int64_t i_ = 0; i_ < (c)->cin; i_++)                                         \
        for (int64_t k_ = 0; k_ < (c)->K; k_++)                                         \
          for (int64_t t_ = 0; t_ < ((c)->transposed ? (c)->L : (Lo)); t_++) {          \
            int64_t xi, yi, wi;                                                         \
            if ((c)->transposed) {                                                      \
              int64_t j = t_ * (c)->stride - (c)->padding + k_;                         \
              if (j < 0 || j >= (Lo)) continue;                                         \
              xi = (b_ * (c)->cin + i_) * (c)->L + t_;                                  \
              yi = (b_ * (c)->cout + o_) * (Lo) + j;                                    \
              wi = (i_ * (c)->cout + o_) * (c)->K + k_;                                 \
            } else {                                                                    \
              int64_t j = t_ * (c)->stride - (c)->padding + k_ * (c)->extra;            \
              if (j < 0 || j >= (c)->L) continue;                                       \
              xi = (b_ * (c)->cin + i_) * (c)->L + j;                                   \
              yi = (b_ * (c)->cout + o_) * (Lo) + t_;                                   \
              wi = (o_ * (c)->cin + i_) * (c)->K + k_;                                  \
            }                                                                           \
            body;                                                                       \
          }

static jbx_tensor *run_case(const conv_case *c, jbx_tensor *x, jbx_tensor *w, jbx_tensor *b) {
  return c->transposed ? jbx_conv_transpose1d(x, w, b, c->stride, c->padding, c->extra)
                       : jbx_conv1d(x, w, b, c->stride, c->padding, c->extra);
}

static void check_against_reference(const char *label, const conv_case *c) {
  const int64_t Lo = ref_out_len(c), ny = c->B * c->cout * Lo;
  jbx_tensor *x = randn3(c->B, c->cin, c->L, 1.0f, 11);
  jbx_tensor *w = c->transposed ? randn3(c->cin, c->cout, c->K, 0.3f, 12)
                                : randn3(c->cout, c->cin, c->K, 0.3f, 12);
  jbx_tensor *b = c->bias ? randn1(c->cout, 0.5f, 13) : NULL;
  jbx_tensor *g = randn3(c->B, c->cout, Lo, 1.0f, 14);
  g->requires_grad = false;
  const float *xd = jbx_f32(x), *wd = jbx_f32(w), *gd = jbx_f32(g);
  double *y = calloc((size_t)ny, sizeof *y), *gx = calloc((size_t)jbx_numel(x), sizeof *gx);
  double *gw = calloc((size_t)jbx_numel(w), sizeof *gw), *gb = calloc((size_t)c->cout, sizeof *gb);
  FOR_EACH_TAP(c, Lo, {
    y[yi] += (double)xd[xi] * wd[wi];
    gx[xi] += (double)gd[yi] * wd[wi];
    gw[wi] += (double)gd[yi] * xd[xi];
  });
  for (int64_t i = 0; i < ny; i++) {
    int64_t o = (i / Lo) % c->cout;
    if (b) y[i] += jbx_f32(b)[o];
    gb[o] += gd[i];
  }
  jbx_tensor *out = run_case(c, x, w, b);
  CHECK(out != NULL, "%s: %s", label, jbx_last_error());
  if (out) {
    CHECK(out->ndim == 3 && out->shape[0] == c->B && out->shape[1] == c->cout &&
              out->shape[2] == Lo,
          "%s: output shape", label);
    double e = max_err(out, y, ny);
    CHECK(e < 1e-4, "%s forward: error %.3g", label, e);
  }
  /* An empty output has nothing to propagate (the core cannot copy empty tensors yet). */
  if (out && ny > 0) {
    CHECK(jbx_backward(out, g) == 0, "%s backward: %s", label, jbx_last_error());
    double e = max_err(x->grad, gx, jbx_numel(x));
    CHECK(e < 1e-4, "%s grad x: error %.3g", label, e);
    e = max_err(w->grad, gw, jbx_numel(w));
    CHECK(e < 1e-4, "%s grad w: error %.3g", label, e);
    if (b) {
      e = max_err(b->grad, gb, c->cout);
      CHECK(e < 1e-4, "%s grad bias: error %.3g", label, e);
    }
  }
  free(y);
  free(gx);
  free(gw);
  free(gb);
  jbx_release(out);
  jbx_release(x);
  jbx_release(w);
  jbx_release(b);
  jbx_release(g);
}

/* The engine cuts the columns into panels of about min(4096, 2^19 / (in_ch * kernel))
 * (at least 256): longer items are cut into slices written in place, shorter ones are
 * grouped into one sgemm (with a partial last group when the batch does not divide), and
 * kernel 1 skips im2col. With the small channel counts here panels are 4096 wide unless
 * noted; each path is covered. */
static void test_reference(void) {
  static const struct {
    const char *label;
    conv_case c;
  } cases[] = {
      /* A dilated tap wholly outside a slice once zeroed memory before its row. */
      {"dilation 2187 beyond a slice (jukebox preset)", {0, 1, 64, 2, 3000, 3, 1, 2187, 2187, 1}},
      {"sliced items, dilation 9", {0, 2, 3, 4, 5000, 3, 1, 9, 9, 1}},
      {"sliced items, dilation 27", {0, 1, 2, 3, 4200, 3, 1, 27, 27, 0}},
      {"wide input: 256-column slices", {0, 2, 700, 2, 600, 3, 1, 1, 1, 1}},
      {"grouped with partial group", {0, 3, 3, 2, 1500, 3, 1, 1, 1, 1}},
      {"one item per panel", {0, 2, 3, 2, 3000, 3, 1, 1, 1, 1}},
      {"short items, one group", {0, 5, 4, 3, 50, 4, 2, 1, 1, 0}},
      {"downsample sliced, odd length", {0, 2, 2, 5, 10001, 4, 2, 1, 1, 1}},
      {"downsample grouped", {0, 3, 2, 3, 1001, 4, 2, 1, 1, 1}},
      {"kernel 1 sliced", {0, 2, 3, 4, 5000, 1, 1, 0, 1, 1}},
      {"kernel 1 grouped, partial", {0, 5, 4, 2, 1500, 1, 1, 0, 1, 1}},
      {"kernel 1 padded stride 2", {0, 2, 3, 2, 31, 1, 2, 2, 1, 1}},
      {"dilation 27 wider than input", {0, 2, 2, 2, 20, 3, 1, 27, 27, 0}},
      {"transpose sliced", {1, 2, 3, 2, 5000, 4, 2, 1, 0, 1}},
      {"transpose partial group", {1, 3, 2, 3, 1500, 4, 2, 1, 0, 0}},
      {"transpose short, output_padding", {1, 4, 3, 2, 9, 5, 3, 2, 2, 1}},
      {"transpose kernel 1", {1, 3, 4, 3, 40, 1, 1, 0, 0, 1}},
      {"empty input, padding only", {0, 2, 2, 3, 0, 1, 1, 1, 1, 1}},
      {"batch 0", {0, 0, 2, 3, 8, 3, 1, 1, 1, 1}},
      {"transpose batch 0", {1, 0, 2, 3, 8, 4, 2, 1, 0, 1}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_against_reference(cases[i].label, &cases[i].c);
}

/* Strided (non-contiguous) inputs give the same result and gradients as contiguous ones. */
static void test_strided_input(void) {
  int64_t shape[3] = {2, 7, 3}; /* [B, L, C], transposed to [B, C, L] */
  jbx_tensor *base = gradcheck_input(3, shape, 1.0f, 21);
  jbx_tensor *xt = jbx_transpose(base, 1, 2);
  jbx_tensor *w = randn3(4, 3, 3, 0.5f, 22);
  w->requires_grad = false;
  jbx_tensor *a = jbx_conv1d(xt, w, NULL, 1, 1, 1);
  jbx_tensor *xc = jbx_clone(xt);
  jbx_tensor *ref = jbx_conv1d(xc, w, NULL, 1, 1, 1);
  CHECK(xt && !jbx_is_contiguous(xt), "transpose gives a strided view");
  CHECK(max_err_t(a, ref) < 1e-6, "strided input matches contiguous");
  jbx_tensor *g = jbx_full(3, a->shape, 1.0f);
  CHECK(jbx_backward(a, g) == 0, "backward through a view: %s", jbx_last_error());
  CHECK(base->grad && base->grad->shape[1] == 7 && base->grad->shape[2] == 3,
        "gradient reaches the base [2, 7, 3]");
  jbx_release(g);
  jbx_release(a);
  jbx_release(ref);
  jbx_release(xc);
  jbx_release(xt);
  jbx_release(w);
  jbx_release(base);
}

/* Nothing is recorded when no input wants a gradient, or in no-grad mode. */
static void test_recording(void) {
  jbx_tensor *x = randn3(1, 2, 8, 1.0f, 31), *w = randn3(3, 2, 3, 1.0f, 32);
  x->requires_grad = w->requires_grad = false;
  jbx_tensor *o = jbx_conv1d(x, w, NULL, 1, 1, 1);
  CHECK(o && o->node == NULL && !o->requires_grad, "no inputs need grad: no node");
  jbx_release(o);
  w->requires_grad = true;
  bool prev = jbx_set_grad_enabled(false);
  o = jbx_conv1d(x, w, NULL, 1, 1, 1);
  CHECK(o && o->node == NULL, "no-grad mode: no node");
  jbx_set_grad_enabled(prev);
  jbx_release(o);
  o = jbx_conv1d(x, w, NULL, 1, 1, 1);
  CHECK(o && o->node && strcmp(o->node->op, "conv1d") == 0, "records conv1d");
  jbx_tensor *g = o ? jbx_full(3, o->shape, 1.0f) : NULL;
  CHECK(o && jbx_backward(o, g) == 0 && w->grad && !x->grad, "only w gets a gradient");
  jbx_release(g);
  jbx_release(o);
  jbx_release(x);
  jbx_release(w);
}

/* --------------------------------------------------------------- errors */

static jbx_tensor *zeros3(int64_t a, int64_t b, int64_t c) {
  int64_t s[3] = {a, b, c};
  return jbx_zeros(3, s);
}

static void test_conv1d_errors(void) {
  jbx_tensor *x = zeros3(4, 1, 16384), *w = zeros3(32, 32, 3), *w1 = zeros3(4, 1, 3);
  int64_t s2[2] = {4, 16}, s1[1] = {5}, s0[1] = {4}, sb2[2] = {4, 1};
  jbx_tensor *x2 = jbx_zeros(2, s2), *b5 = jbx_zeros(1, s1), *b4 = jbx_zeros(1, s0);
  jbx_tensor *bm = jbx_zeros(2, sb2);
  int32_t zi[8] = {0};
  int64_t si3[3] = {1, 1, 8}, sw3[3] = {1, 1, 1}, sbi[1] = {4};
  jbx_tensor *xi = jbx_from_ints(3, si3, zi), *wi = jbx_from_ints(3, sw3, zi);
  jbx_tensor *bi = jbx_from_ints(1, sbi, zi);
  int64_t sk0[3] = {4, 1, 0};
  jbx_tensor *k0 = jbx_empty(JBX_F32, 3, sk0), *short_x = zeros3(1, 1, 3), *w4 = zeros3(1, 1, 4);

  CHECK(jbx_conv1d(x, w, NULL, 1, 1, 1) == NULL, "channel mismatch");
  CHECK_ERROR_HAS("conv1d: input [4, 1, 16384] has 1 channel, weight expects 32");
  CHECK(jbx_conv1d(x2, w1, NULL, 1, 1, 1) == NULL, "2-D input");
  CHECK_ERROR_HAS("conv1d: input [4, 16] must be 3-D [batch, channels, length]");
  CHECK(jbx_conv1d(x, b5, NULL, 1, 1, 1) == NULL, "1-D weight");
  CHECK_ERROR_HAS("conv1d: weight [5] must be 3-D [out_channels, in_channels, kernel]");
  CHECK(jbx_conv1d(x, w1, b5, 1, 1, 1) == NULL, "bias size");
  CHECK_ERROR_HAS("conv1d: bias [5] must be [4], one value per output channel");
  CHECK(jbx_conv1d(x, w1, bm, 1, 1, 1) == NULL, "2-D bias");
  CHECK_ERROR_HAS("conv1d: bias [4, 1] must be [4]");
  CHECK(jbx_conv1d(x, w1, b4, 0, 1, 1) == NULL, "stride 0");
  CHECK_ERROR_HAS("conv1d: stride must be >= 1, got 0");
  CHECK(jbx_conv1d(x, w1, b4, 1, 1, 0) == NULL, "dilation 0");
  CHECK_ERROR_HAS("conv1d: dilation must be >= 1, got 0");
  CHECK(jbx_conv1d(x, w1, b4, 1, -1, 1) == NULL, "negative padding");
  CHECK_ERROR_HAS("conv1d: padding must be >= 0, got -1");
  CHECK(jbx_conv1d(short_x, w4, NULL, 1, 0, 1) == NULL, "too short");
  CHECK_ERROR_HAS("conv1d: input [1, 1, 3] is too short for weight [1, 1, 4] (padding 0, "
                  "dilation 1): output length would be < 1");
  CHECK(jbx_conv1d(short_x, w1, NULL, 1, 0, 2) == NULL, "too short with dilation");
  CHECK_ERROR_HAS("dilation 2): output length would be < 1");
  CHECK(jbx_conv1d(xi, w1, NULL, 1, 0, 1) == NULL, "int32 input");
  CHECK_ERROR_HAS("conv1d: input must be float32, got int32");
  CHECK(jbx_conv1d(short_x, wi, NULL, 1, 0, 1) == NULL, "int32 weight");
  CHECK_ERROR_HAS("conv1d: weight must be float32, got int32");
  CHECK(jbx_conv1d(x, w1, bi, 1, 1, 1) == NULL, "int32 bias");
  CHECK_ERROR_HAS("conv1d: bias must be float32, got int32");
  CHECK(jbx_conv1d(x, k0, NULL, 1, 1, 1) == NULL, "kernel 0");
  CHECK_ERROR_HAS("conv1d: weight [4, 1, 0] has kernel size 0, must be >= 1");
  CHECK(jbx_conv1d(NULL, w1, NULL, 1, 1, 1) == NULL, "missing input");
  CHECK_ERROR_HAS("conv1d: input and weight are required");

  /* An expanded view is huge without memory: the size check must come before any copy. */
  jbx_tensor *one = zeros3(1, 1, 1);
  int64_t huge[3] = {1, 1, 2147483653LL};
  jbx_tensor *big = jbx_expand(one, 3, huge);
  CHECK(big && jbx_conv1d(big, w1, NULL, 1, 0, 1) == NULL, "too large for BLAS");
  CHECK_ERROR_HAS("conv1d: input [1, 1, 2147483653] with weight [4, 1, 3] is too large for BLAS");
  jbx_tensor *wt = zeros3(1, 4, 3);
  CHECK(big && jbx_conv_transpose1d(big, wt, NULL, 1, 0, 0) == NULL, "transpose too large");
  CHECK_ERROR_HAS("conv_transpose1d: input [1, 1, 2147483653] with weight [1, 4, 3] is too large");
  jbx_release(wt);
  jbx_release(big);
  jbx_release(one);

  jbx_tensor *ok = jbx_conv1d(x, w1, b4, 2, 1, 1); /* the same tensors, valid options */
  CHECK(ok && ok->shape[0] == 4 && ok->shape[1] == 4 && ok->shape[2] == 8192, "valid call");
  jbx_release(ok);

  jbx_tensor *ts[] = {x, w, w1, x2, b5, b4, bm, xi, wi, bi, k0, short_x, w4};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) jbx_release(ts[i]);
}

static void test_conv_transpose1d_errors(void) {
  jbx_tensor *x = zeros3(2, 3, 8), *w = zeros3(4, 2, 4), *w3 = zeros3(3, 2, 4);
  int64_t s1[1] = {3}, s2[1] = {2}, sx2[2] = {3, 8};
  jbx_tensor *b3 = jbx_zeros(1, s1), *b2 = jbx_zeros(1, s2), *x2 = jbx_zeros(2, sx2);
  int64_t sk0[3] = {3, 2, 0};
  jbx_tensor *x1 = zeros3(1, 1, 1), *w11 = zeros3(1, 1, 1), *wk0 = jbx_empty(JBX_F32, 3, sk0);
  int32_t zi[24] = {0};
  int64_t sxi[3] = {2, 3, 4};
  jbx_tensor *xi = jbx_from_ints(3, sxi, zi);

  CHECK(jbx_conv_transpose1d(x, w, NULL, 2, 1, 0) == NULL, "channel mismatch");
  CHECK_ERROR_HAS("conv_transpose1d: input [2, 3, 8] has 3 channels, weight expects 4");
  CHECK(jbx_conv_transpose1d(x, w3, b3, 2, 1, 0) == NULL, "bias size");
  CHECK_ERROR_HAS("conv_transpose1d: bias [3] must be [2], one value per output channel");
  CHECK(jbx_conv_transpose1d(x, w3, b2, 2, 1, 2) == NULL, "output_padding = stride");
  CHECK_ERROR_HAS("conv_transpose1d: output_padding must be >= 0 and smaller than stride 2, got 2");
  CHECK(jbx_conv_transpose1d(x, w3, b2, 2, 1, -1) == NULL, "negative output_padding");
  CHECK_ERROR_HAS("smaller than stride 2, got -1");
  CHECK(jbx_conv_transpose1d(x, w3, b2, 0, 1, 0) == NULL, "stride 0");
  CHECK_ERROR_HAS("conv_transpose1d: stride must be >= 1, got 0");
  CHECK(jbx_conv_transpose1d(x, w3, b2, 2, -2, 0) == NULL, "negative padding");
  CHECK_ERROR_HAS("conv_transpose1d: padding must be >= 0, got -2");
  CHECK(jbx_conv_transpose1d(x1, w11, NULL, 1, 1, 0) == NULL, "empty output");
  CHECK_ERROR_HAS("conv_transpose1d: input [1, 1, 1] with weight [1, 1, 1] (stride 1, padding 1, "
                  "output_padding 0): output length would be < 1");
  CHECK(jbx_conv_transpose1d(x2, w3, NULL, 2, 1, 0) == NULL, "2-D input");
  CHECK_ERROR_HAS("conv_transpose1d: input [3, 8] must be 3-D");
  CHECK(jbx_conv_transpose1d(x, b3, NULL, 2, 1, 0) == NULL, "1-D weight");
  CHECK_ERROR_HAS("conv_transpose1d: weight [3] must be 3-D [in_channels, out_channels, kernel]");
  CHECK(jbx_conv_transpose1d(x, wk0, NULL, 2, 1, 0) == NULL, "kernel 0");
  CHECK_ERROR_HAS("conv_transpose1d: weight [3, 2, 0] has kernel size 0");
  CHECK(jbx_conv_transpose1d(xi, w3, NULL, 2, 1, 0) == NULL, "int32 input");
  CHECK_ERROR_HAS("conv_transpose1d: input must be float32, got int32");

  jbx_tensor *ok = jbx_conv_transpose1d(x, w3, b2, 2, 1, 1);
  CHECK(ok && ok->shape[0] == 2 && ok->shape[1] == 2 && ok->shape[2] == 17,
        "valid call: (8-1)*2 - 2 + 4 + 1 = 17");
  jbx_release(ok);

  jbx_tensor *ts[] = {x, w, w3, b3, b2, x2, x1, w11, wk0, xi};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) jbx_release(ts[i]);
}

int main(void) {
  test_fixtures();
  test_reference();
  test_strided_input();
  test_recording();
  test_conv1d_errors();
  test_conv_transpose1d_errors();
  return check_summary();
}
