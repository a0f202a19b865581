/* Elementwise ops: values against double-precision references (same shape, broadcast,
 * 0-dim, non-contiguous, big enough for the threaded path), int32 variants, exact
 * gradients at special points, gradient accumulation, no_grad and every error (gradient
 * checks by central differences: rows of op_table.h). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_rng.h"

#define SH(...) ((const int64_t[]){__VA_ARGS__})
#define FL(...) ((const float[]){__VA_ARGS__})

typedef jbx_tensor *(*bin_fn)(jbx_tensor *, jbx_tensor *);
typedef double (*bin_ref)(double, double);
typedef jbx_tensor *(*un_fn)(jbx_tensor *, const float *p);
typedef double (*un_ref)(double, const float *p);

static jbx_rng rng;

static jbx_tensor *randn(int ndim, const int64_t *shape) { return jbx_randn(ndim, shape, &rng); }

/* ---------------------------------------------------------------- reference checks */

static int64_t bshape(const jbx_tensor *a, const jbx_tensor *b, int64_t *shape) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int d = 0; d < nd; d++) {
    int ia = d - (nd - a->ndim), ib = d - (nd - b->ndim);
    int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
    shape[d] = sa == 1 ? sb : sa;
  }
  return nd;
}

/* Row-major index into t of the output position with coordinates idx (nd dims). */
static int64_t src_index(const jbx_tensor *t, int nd, const int64_t *idx) {
  int64_t li = 0;
  for (int j = 0; j < t->ndim; j++) {
    int64_t c = t->shape[j] == 1 ? 0 : idx[nd - t->ndim + j];
    li = li * t->shape[j] + c;
  }
  return li;
}

static void coords(int nd, const int64_t *shape, int64_t i, int64_t *idx) {
  for (int d = nd - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i /= shape[d];
  }
}

static bool close_to(double got, double want, double tol) {
  if (isnan(want)) return isnan(got);
  if (isinf(want)) return got == want;
  return fabs(got - want) <= tol * (1.0 + fabs(want));
}

/* op(a, b) against ref on every element, with the shape broadcasting predicts. */
static void check_binary(const char *name, bin_fn op, bin_ref ref, jbx_tensor *a, jbx_tensor *b,
                         double tol) {
  int64_t shape[JBX_MAX_DIMS], idx[JBX_MAX_DIMS];
  int nd = (int)bshape(a, b, shape);
  jbx_tensor *out = op(a, b);
  CHECK(out != NULL, "%s failed: %s", name, jbx_last_error());
  if (!out) return;
  bool shape_ok = out->ndim == nd && jbx_is_contiguous(out);
  for (int d = 0; shape_ok && d < nd; d++) shape_ok = out->shape[d] == shape[d];
  char s[160];
  CHECK(shape_ok, "%s: output shape %s", name, jbx_shape_str(out, s, sizeof s));
  int64_t bad = 0, first = -1;
  double got1 = 0, want1 = 0;
  for (int64_t i = 0; shape_ok && i < jbx_numel(out); i++) {
    coords(nd, shape, i, idx);
    double want = ref(jbx_get(a, src_index(a, nd, idx)), jbx_get(b, src_index(b, nd, idx)));
    double got = jbx_get(out, i);
    if (!close_to(got, want, tol)) {
      if (first < 0) first = i, got1 = got, want1 = want;
      bad++;
    }
  }
  CHECK(bad == 0, "%s: %lld of %lld wrong, first at %lld: %.9g vs %.9g", name, (long long)bad,
        (long long)jbx_numel(out), (long long)first, got1, want1);
  jbx_release(out);
}

static void check_unary(const char *name, un_fn op, un_ref ref, const float *p, jbx_tensor *a,
                        double tol) {
  jbx_tensor *out = op(a, p);
  CHECK(out != NULL, "%s failed: %s", name, jbx_last_error());
  if (!out) return;
  CHECK(jbx_same_shape(out, a) && jbx_is_contiguous(out), "%s: output shape", name);
  int64_t bad = 0, first = -1;
  double got1 = 0, want1 = 0;
  for (int64_t i = 0; i < jbx_numel(out); i++) {
    double want = ref(jbx_get(a, i), p), got = jbx_get(out, i);
    if (!close_to(got, want, tol)) {
      if (first < 0) first = i, got1 = got, want1 = want;
      bad++;
    }
  }
  CHECK(bad == 0, "%s: %lld of %lld wrong, first at %lld: %.9g vs %.9g", name, (long long)bad,
        (long long)jbx_numel(out), (long long)first, got1, want1);
  jbx_release(out);
}

static void check_values(const char *name, jbx_tensor *t, int ndim, const int64_t *shape,
                         const float *want, double tol) {
  CHECK(t != NULL, "%s failed: %s", name, jbx_last_error());
  if (!t) return;
  bool ok = t->ndim == ndim;
  for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
  char s[160];
  CHECK(ok, "%s: shape %s", name, jbx_shape_str(t, s, sizeof s));
  for (int64_t i = 0; ok && i < jbx_numel(t); i++)
    CHECK(close_to(jbx_get(t, i), want[i], tol), "%s[%lld]: %.9g vs %.9g", name, (long long)i,
          jbx_get(t, i), (double)want[i]);
}

/* ---------------------------------------------------------------- op tables */

static double r_add(double x, double y) { return x + y; }
static double r_sub(double x, double y) { return x - y; }
static double r_mul(double x, double y) { return x * y; }
static double r_div(double x, double y) { return x / y; }
static double r_pow(double x, double y) { return pow(x, y); }
static double r_max(double x, double y) { return isnan(x) || isnan(y) ? NAN : fmax(x, y); }
static double r_min(double x, double y) { return isnan(x) || isnan(y) ? NAN : fmin(x, y); }
static double r_gt(double x, double y) { return x > y; }
static double r_lt(double x, double y) { return x < y; }
static double r_eq(double x, double y) { return x == y; }
static double r_st(double x, double y) { return y; }

static const struct {
  const char *name;
  bin_fn op;
  bin_ref ref;
  int domain; /* 1: a positive (pow), 2: b away from 0 (div) */
  double tol;
} BINS[] = {
    {"add", jbx_add, r_add, 0, 1e-6},        {"sub", jbx_sub, r_sub, 0, 1e-6},
    {"mul", jbx_mul, r_mul, 0, 1e-6},        {"div", jbx_div, r_div, 2, 1e-6},
    {"pow", jbx_pow, r_pow, 1, 2e-6},        {"maximum", jbx_maximum, r_max, 0, 0},
    {"minimum", jbx_minimum, r_min, 0, 0},   {"gt", jbx_gt, r_gt, 0, 0},
    {"lt", jbx_lt, r_lt, 0, 0},              {"eq", jbx_eq, r_eq, 0, 0},
    {"straight_through", jbx_straight_through, r_st, 0, 1e-6},
};
#define NBINS ((int)(sizeof BINS / sizeof BINS[0]))

static jbx_tensor *u_add_scalar(jbx_tensor *a, const float *p) { return jbx_add_scalar(a, p[0]); }
static jbx_tensor *u_mul_scalar(jbx_tensor *a, const float *p) { return jbx_mul_scalar(a, p[0]); }
static jbx_tensor *u_pow_scalar(jbx_tensor *a, const float *p) { return jbx_pow_scalar(a, p[0]); }
static jbx_tensor *u_clamp(jbx_tensor *a, const float *p) { return jbx_clamp(a, p[0], p[1]); }
#define U(name) \
  static jbx_tensor *u_##name(jbx_tensor *a, const float *p) { return jbx_##name(a); }
U(neg) U(exp) U(log) U(sqrt) U(abs) U(relu) U(gelu) U(quick_gelu) U(tanh) U(sigmoid)

static double r_add_scalar(double x, const float *p) { return x + p[0]; }
static double r_mul_scalar(double x, const float *p) { return x * p[0]; }
static double r_pow_scalar(double x, const float *p) { return pow(x, p[0]); }
static double r_clamp(double x, const float *p) { return isnan(x) ? x : fmin(fmax(x, p[0]), p[1]); }
static double r_neg(double x, const float *p) { return -x; }
static double r_exp(double x, const float *p) { return exp(x); }
static double r_log(double x, const float *p) { return log(x); }
static double r_sqrt(double x, const float *p) { return sqrt(x); }
static double r_abs(double x, const float *p) { return fabs(x); }
static double r_relu(double x, const float *p) { return isnan(x) ? x : x > 0 ? x : 0; }
static double r_gelu(double x, const float *p) {
  return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
static double r_quick_gelu(double x, const float *p) { return x / (1 + exp(-1.702 * x)); }
static double r_tanh(double x, const float *p) { return tanh(x); }
static double r_sigmoid(double x, const float *p) { return 1 / (1 + exp(-x)); }

static const struct {
  const char *name;
  un_fn op;
  un_ref ref;
  float p[2];
  int domain; /* 1: positive inputs, 2: grid (away from kinks) */
  double tol;
} UNS[] = {
    {"add_scalar", u_add_scalar, r_add_scalar, {1.5f}, 0, 1e-6},
    {"mul_scalar", u_mul_scalar, r_mul_scalar, {-2.5f}, 0, 1e-6},
    {"pow_scalar 2", u_pow_scalar, r_pow_scalar, {2}, 0, 1e-6},
    {"pow_scalar 3", u_pow_scalar, r_pow_scalar, {3}, 0, 1e-6},
    {"pow_scalar 1", u_pow_scalar, r_pow_scalar, {1}, 0, 0},
    {"pow_scalar 0", u_pow_scalar, r_pow_scalar, {0}, 0, 0},
    {"pow_scalar -1", u_pow_scalar, r_pow_scalar, {-1}, 1, 1e-6},
    {"pow_scalar 0.5", u_pow_scalar, r_pow_scalar, {0.5f}, 1, 1e-6},
    {"pow_scalar -0.5", u_pow_scalar, r_pow_scalar, {-0.5f}, 1, 1e-6},
    {"pow_scalar 1.7", u_pow_scalar, r_pow_scalar, {1.7f}, 1, 1e-6},
    {"pow_scalar -2.3", u_pow_scalar, r_pow_scalar, {-2.3f}, 1, 1e-6},
    {"neg", u_neg, r_neg, {0}, 0, 0},
    {"exp", u_exp, r_exp, {0}, 0, 1e-6},
    {"log", u_log, r_log, {0}, 1, 1e-6},
    {"sqrt", u_sqrt, r_sqrt, {0}, 1, 1e-6},
    {"abs", u_abs, r_abs, {0}, 2, 0},
    {"relu", u_relu, r_relu, {0}, 2, 0},
    {"gelu", u_gelu, r_gelu, {0}, 0, 1e-6},
    {"quick_gelu", u_quick_gelu, r_quick_gelu, {0}, 0, 1e-6},
    {"tanh", u_tanh, r_tanh, {0}, 0, 1e-6},
    {"sigmoid", u_sigmoid, r_sigmoid, {0}, 0, 1e-6},
    {"clamp", u_clamp, r_clamp, {-0.5f, 0.7f}, 2, 0},
    {"clamp low only", u_clamp, r_clamp, {-0.5f, INFINITY}, 2, 0},
};
#define NUNS ((int)(sizeof UNS / sizeof UNS[0]))

/* ---------------------------------------------------------------- value tests */

static void test_hand_values(void) {
  jbx_tensor *a = jbx_from_floats(1, SH(3), FL(1, 2, 3));
  jbx_tensor *b = jbx_from_floats(1, SH(3), FL(10, 20, 30));
  jbx_tensor *t;
  t = jbx_add(a, b); check_values("add", t, 1, SH(3), FL(11, 22, 33), 0); jbx_release(t);
  t = jbx_sub(a, b); check_values("sub", t, 1, SH(3), FL(-9, -18, -27), 0); jbx_release(t);
  t = jbx_mul(a, b); check_values("mul", t, 1, SH(3), FL(10, 40, 90), 0); jbx_release(t);
  t = jbx_div(b, a); check_values("div", t, 1, SH(3), FL(10, 10, 10), 0); jbx_release(t);
  jbx_tensor *e = jbx_from_floats(1, SH(3), FL(2, 0.5f, -1));
  t = jbx_pow(a, e); check_values("pow", t, 1, SH(3), FL(1, 1.41421356f, 1.0f / 3), 1e-7); jbx_release(t);
  jbx_tensor *c = jbx_from_floats(1, SH(3), FL(3, 2, 1));
  t = jbx_maximum(a, c); check_values("maximum", t, 1, SH(3), FL(3, 2, 3), 0); jbx_release(t);
  t = jbx_minimum(a, c); check_values("minimum", t, 1, SH(3), FL(1, 2, 1), 0); jbx_release(t);
  t = jbx_gt(a, c); check_values("gt", t, 1, SH(3), FL(0, 0, 1), 0); jbx_release(t);
  t = jbx_lt(a, c); check_values("lt", t, 1, SH(3), FL(1, 0, 0), 0); jbx_release(t);
  t = jbx_eq(a, c); check_values("eq", t, 1, SH(3), FL(0, 1, 0), 0); jbx_release(t);

  /* [2,1,3] + [4,1] -> [2,4,3]: out[i][j][k] = a[i][0][k] + b[j][0] */
  jbx_tensor *a3 = jbx_from_floats(3, SH(2, 1, 3), FL(1, 2, 3, 4, 5, 6));
  jbx_tensor *b2 = jbx_from_floats(2, SH(4, 1), FL(10, 20, 30, 40));
  t = jbx_add(a3, b2);
  check_values("add [2,1,3]+[4,1]", t, 3, SH(2, 4, 3),
               FL(11, 12, 13, 21, 22, 23, 31, 32, 33, 41, 42, 43,  /* a row 0 */
                  14, 15, 16, 24, 25, 26, 34, 35, 36, 44, 45, 46), /* a row 1 */
               0);
  jbx_release(t);
  /* 0-dim with 0-dim stays 0-dim */
  jbx_tensor *s1 = jbx_scalar(2), *s2 = jbx_scalar(5);
  t = jbx_mul(s1, s2); check_values("mul 0-dim", t, 0, NULL, FL(10), 0); jbx_release(t);
  t = jbx_sub(s1, a); check_values("sub 0-dim - [3]", t, 1, SH(3), FL(1, 0, -1), 0); jbx_release(t);

  /* unary values at chosen points */
  jbx_tensor *x = jbx_from_floats(1, SH(5), FL(-2, -0.5f, 0, 1, 3));
  t = jbx_relu(x); check_values("relu", t, 1, SH(5), FL(0, 0, 0, 1, 3), 0); jbx_release(t);
  t = jbx_abs(x); check_values("abs", t, 1, SH(5), FL(2, 0.5f, 0, 1, 3), 0); jbx_release(t);
  t = jbx_clamp(x, -1, 1); check_values("clamp", t, 1, SH(5), FL(-1, -0.5f, 0, 1, 1), 0); jbx_release(t);
  t = jbx_clamp(x, -INFINITY, 0.5f);
  check_values("clamp hi only", t, 1, SH(5), FL(-2, -0.5f, 0, 0.5f, 0.5f), 0); jbx_release(t);
  t = jbx_sigmoid(x);
  check_values("sigmoid", t, 1, SH(5), FL(0.11920292f, 0.37754067f, 0.5f, 0.73105858f, 0.95257413f), 1e-7);
  jbx_release(t);
  /* GELU's tanh form at x = 1: 0.5 (1 + tanh(0.7978845608 * 1.044715)) */
  t = jbx_gelu(x);
  check_values("gelu", t, 1, SH(5), FL(-0.04540231f, -0.15428599f, 0, 0.84119199f, 2.99636261f), 1e-6);
  jbx_release(t);
  t = jbx_tanh(x);
  check_values("tanh", t, 1, SH(5), FL(-0.96402758f, -0.46211716f, 0, 0.76159416f, 0.99505475f), 1e-7);
  jbx_release(t);
  t = jbx_neg(x); check_values("neg", t, 1, SH(5), FL(2, 0.5f, 0, -1, -3), 0); jbx_release(t);
  t = jbx_pow_scalar(x, 2); check_values("pow_scalar 2", t, 1, SH(5), FL(4, 0.25f, 0, 1, 9), 0); jbx_release(t);
  t = jbx_pow_scalar(x, 0); check_values("pow_scalar 0", t, 1, SH(5), FL(1, 1, 1, 1, 1), 0); jbx_release(t);

  /* NaN propagates through relu, clamp, maximum and minimum (as in PyTorch) */
  jbx_tensor *nan = jbx_from_floats(1, SH(2), FL(NAN, 1));
  jbx_tensor *one = jbx_scalar(1);
  t = jbx_relu(nan); CHECK(isnan(jbx_get(t, 0)), "relu(NaN)"); jbx_release(t);
  t = jbx_clamp(nan, 0, 0.5f); CHECK(isnan(jbx_get(t, 0)) && jbx_get(t, 1) == 0.5, "clamp(NaN)"); jbx_release(t);
  t = jbx_maximum(nan, one); CHECK(isnan(jbx_get(t, 0)), "maximum(NaN, 1)"); jbx_release(t);
  t = jbx_maximum(one, nan); CHECK(isnan(jbx_get(t, 0)), "maximum(1, NaN)"); jbx_release(t);
  t = jbx_minimum(one, nan); CHECK(isnan(jbx_get(t, 0)), "minimum(1, NaN)"); jbx_release(t);

  /* empty tensors broadcast to empty results */
  jbx_tensor *empty = jbx_zeros(2, SH(0, 3));
  t = jbx_add(empty, a);
  CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 3, "add of an empty tensor");
  jbx_release(t);
  t = jbx_exp(empty); CHECK(t && jbx_numel(t) == 0, "exp of an empty tensor"); jbx_release(t);

  jbx_release(empty), jbx_release(one), jbx_release(nan), jbx_release(x), jbx_release(s1);
  jbx_release(s2), jbx_release(a3), jbx_release(b2), jbx_release(c), jbx_release(e);
  jbx_release(a), jbx_release(b);
}

/* Every binary op over a set of layouts: same shape, broadcast both ways, 0-dim on
 * either side, transposed and narrowed inputs, and big ones for the threaded path. */
static void test_binary_values(void) {
  for (int k = 0; k < NBINS; k++) {
    struct { jbx_tensor *a, *b; const char *what; } cases[20];
    int n = 0;
    jbx_tensor *t;
#define CASE(A, B, W) cases[n].a = (A), cases[n].b = (B), cases[n].what = (W), n++
    CASE(randn(2, SH(2, 3)), randn(2, SH(2, 3)), "same shape");
    CASE(randn(3, SH(2, 1, 3)), randn(2, SH(4, 1)), "[2,1,3] with [4,1]");
    CASE(randn(2, SH(4, 1)), randn(3, SH(2, 1, 3)), "[4,1] with [2,1,3]");
    CASE(randn(2, SH(3, 1)), randn(2, SH(1, 4)), "[3,1] with [1,4]");
    CASE(randn(2, SH(2, 3)), jbx_scalar(0.75f), "b 0-dim");
    CASE(jbx_scalar(-1.25f), randn(2, SH(2, 3)), "a 0-dim");
    CASE(jbx_scalar(1.5f), jbx_scalar(-0.5f), "both 0-dim");
    CASE(randn(1, SH(1)), randn(2, SH(2, 3)), "a [1]");
    t = randn(2, SH(3, 2));
    CASE(jbx_transpose(t, 0, 1), randn(2, SH(2, 3)), "a transposed");
    jbx_release(t);
    t = randn(2, SH(2, 5));
    CASE(randn(1, SH(3)), jbx_narrow(t, 1, 1, 3), "b narrowed, broadcast");
    jbx_release(t);
    t = randn(3, SH(4, 3, 5));
    jbx_tensor *u = randn(2, SH(5, 3));
    CASE(jbx_narrow(t, 0, 1, 2), jbx_transpose(u, 0, 1), "narrowed with transposed");
    jbx_release(t), jbx_release(u);
    CASE(randn(2, SH(131, 521)), randn(2, SH(131, 521)), "big same shape");
    CASE(randn(2, SH(131, 521)), randn(2, SH(131, 1)), "big broadcast column");
    t = randn(2, SH(521, 131));
    CASE(jbx_transpose(t, 0, 1), randn(1, SH(521)), "big transposed, broadcast row");
    jbx_release(t);
    CASE(randn(2, SH(131, 521)), jbx_scalar(0.3f), "big with 0-dim");
    t = randn(3, SH(5, 41, 37)); /* tiled walk with an outer dim and partial tiles */
    CASE(jbx_transpose(t, 1, 2), randn(2, SH(37, 1)), "[5,37,41] transposed with [37,1]");
    jbx_release(t);
#undef CASE
    for (int c = 0; c < n; c++) {
      jbx_tensor *a = cases[c].a, *b = cases[c].b;
      /* domains: positive bases for pow, denominators away from 0 for div (on the whole
       * storage, so views are covered) */
      if (BINS[k].domain == 1) {
        for (int64_t i = 0; i < (int64_t)(a->storage->nbytes / 4); i++) {
          float *p = (float *)a->storage->data + i;
          *p = fabsf(*p) + 0.5f;
        }
      }
      if (BINS[k].domain == 2)
        for (int64_t i = 0; i < (int64_t)(b->storage->nbytes / 4); i++) {
          float *p = (float *)b->storage->data + i;
          *p = *p + (*p < 0 ? -0.25f : 0.25f);
        }
      char name[96];
      snprintf(name, sizeof name, "%s %s", BINS[k].name, cases[c].what);
      check_binary(name, BINS[k].op, BINS[k].ref, a, b, BINS[k].tol);
      /* a non-contiguous operand gives bit-identical results to its contiguous copy */
      if (!jbx_is_contiguous(a) || !jbx_is_contiguous(b)) {
        jbx_tensor *ac = jbx_clone(a), *bc = jbx_clone(b);
        jbx_tensor *o1 = BINS[k].op(a, b), *o2 = BINS[k].op(ac, bc);
        bool same = o1 && o2 && jbx_same_shape(o1, o2);
        for (int64_t i = 0; same && i < jbx_numel(o1); i++)
          same = memcmp(jbx_f32(o1) + i, jbx_f32(o2) + i, 4) == 0;
        CHECK(same, "%s: differs from the contiguous result", name);
        jbx_release(o1), jbx_release(o2), jbx_release(ac), jbx_release(bc);
      }
      jbx_release(a), jbx_release(b);
    }
  }
}

static void test_unary_values(void) {
  for (int k = 0; k < NUNS; k++) {
    jbx_tensor *t1 = randn(2, SH(3, 2)), *t2 = randn(3, SH(3, 4, 5)), *t3 = randn(2, SH(521, 131));
    jbx_tensor *xs[] = {randn(2, SH(2, 3)), jbx_scalar(0.8f), jbx_transpose(t1, 0, 1),
                        jbx_narrow(t2, 1, 1, 2), randn(2, SH(131, 521)), jbx_transpose(t3, 0, 1)};
    const char *what[] = {"contiguous", "0-dim", "transposed", "narrowed", "big", "big transposed"};
    for (int c = 0; c < 6; c++) {
      jbx_tensor *x = xs[c];
      float *p = (float *)x->storage->data;
      for (size_t i = 0; i < x->storage->nbytes / 4; i++) {
        if (UNS[k].domain == 1) p[i] = fabsf(p[i]) + 0.1f;
        if (UNS[k].domain == 2) p[i] = roundf(p[i] / 0.3f) * 0.3f + 0.05f;
      }
      char name[96];
      snprintf(name, sizeof name, "%s %s", UNS[k].name, what[c]);
      check_unary(name, UNS[k].op, UNS[k].ref, UNS[k].p, x, UNS[k].tol);
      jbx_release(x);
    }
    jbx_release(t1), jbx_release(t2), jbx_release(t3);
  }
}

static void test_int32(void) {
  jbx_tensor *a = jbx_from_ints(2, SH(2, 2), (const int32_t[]){1, 2, INT32_MAX, -7});
  jbx_tensor *b = jbx_from_ints(1, SH(2), (const int32_t[]){3, 2});
  jbx_tensor *t = jbx_add(a, b);
  CHECK(t && t->dtype == JBX_I32, "int add gives int32");
  if (t) {
    int32_t *p = jbx_i32(t);
    CHECK(p[0] == 4 && p[1] == 4 && p[2] == INT32_MIN + 2 && p[3] == -5, "int add wraps: %d %d %d %d",
          p[0], p[1], p[2], p[3]);
  }
  jbx_release(t);
  t = jbx_sub(a, b);
  CHECK(t && t->dtype == JBX_I32 && jbx_i32(t)[0] == -2 && jbx_i32(t)[3] == -9, "int sub");
  jbx_release(t);
  t = jbx_mul(a, b);
  CHECK(t && t->dtype == JBX_I32 && jbx_i32(t)[1] == 4 && jbx_i32(t)[2] == (int32_t)0x7ffffffd &&
            jbx_i32(t)[3] == -14,
        "int mul wraps");
  jbx_release(t);
  t = jbx_eq(a, b);
  check_values("int eq", t, 2, SH(2, 2), FL(0, 1, 0, 0), 0);
  CHECK(t && t->dtype == JBX_F32, "int eq gives a float mask");
  jbx_release(t);
  t = jbx_gt(a, b); check_values("int gt", t, 2, SH(2, 2), FL(0, 0, 1, 0), 0); jbx_release(t);
  t = jbx_lt(a, b); check_values("int lt", t, 2, SH(2, 2), FL(1, 0, 0, 1), 0); jbx_release(t);
  jbx_release(a), jbx_release(b);
}

static void test_masks(void) {
  /* where with all three broadcast: mask [4,1], a [2,1,3], b [3] -> [2,4,3] */
  jbx_tensor *m = jbx_from_floats(2, SH(4, 1), FL(1, 0, 2, 0));
  jbx_tensor *mi = jbx_from_ints(2, SH(4, 1), (const int32_t[]){1, 0, 2, 0});
  jbx_tensor *a = jbx_from_floats(3, SH(2, 1, 3), FL(1, 2, 3, 4, 5, 6));
  jbx_tensor *b = jbx_from_floats(1, SH(3), FL(-1, -2, -3));
  const float *want = FL(1, 2, 3, -1, -2, -3, 1, 2, 3, -1, -2, -3, 4, 5, 6, -1, -2, -3, 4, 5, 6, -1, -2, -3);
  jbx_tensor *t = jbx_where(m, a, b);
  check_values("where broadcast", t, 3, SH(2, 4, 3), want, 0);
  jbx_release(t);
  t = jbx_where(mi, a, b);
  check_values("where int32 mask", t, 3, SH(2, 4, 3), want, 0);
  jbx_release(t);
  /* masked_fill broadcasts the mask: a [2,1,3] with mask [4,1] -> [2,4,3] */
  t = jbx_masked_fill(a, m, 9);
  check_values("masked_fill broadcast", t, 3, SH(2, 4, 3),
               FL(9, 9, 9, 1, 2, 3, 9, 9, 9, 1, 2, 3, 9, 9, 9, 4, 5, 6, 9, 9, 9, 4, 5, 6), 0);
  jbx_release(t);
  jbx_tensor *m3 = jbx_from_ints(1, SH(3), (const int32_t[]){0, 1, 0});
  t = jbx_masked_fill(a, m3, -INFINITY);
  check_values("masked_fill int mask", t, 3, SH(2, 1, 3), FL(1, -INFINITY, 3, 4, -INFINITY, 6), 0);
  jbx_release(t);
  /* a comparison mask feeds where */
  jbx_tensor *zero = jbx_scalar(0);
  jbx_tensor *pos = jbx_gt(b, zero);
  t = jbx_where(pos, b, zero);
  check_values("where(gt(b, 0), b, 0)", t, 1, SH(3), FL(0, 0, 0), 0);
  jbx_release(t), jbx_release(pos), jbx_release(zero);
  jbx_release(m3), jbx_release(m), jbx_release(mi), jbx_release(a), jbx_release(b);

  /* straight_through: value a + (b - a) (= b up to rounding), gradient only to a */
  jbx_tensor *x = jbx_from_floats(2, SH(2, 3), FL(0.1f, 1e4f, -3, 7, 0.3f, 2));
  jbx_tensor *q = jbx_from_floats(2, SH(2, 3), FL(0.7f, 1.1f, -2, 6, 0.3f, 1e-3f));
  x->requires_grad = q->requires_grad = true;
  jbx_tensor *st = jbx_straight_through(x, q);
  bool exact = st != NULL;
  for (int i = 0; exact && i < 6; i++) {
    float xv = jbx_f32(x)[i], qv = jbx_f32(q)[i];
    exact = jbx_f32(st)[i] == xv + (qv - xv);
    CHECK(close_to(jbx_f32(st)[i], qv, 1e-3), "straight_through[%d] %g near b %g", i, jbx_f32(st)[i], qv);
  }
  CHECK(exact, "straight_through computes a + (b - a) exactly");
  jbx_tensor *g = jbx_from_floats(2, SH(2, 3), FL(1, 2, 3, 4, 5, 6));
  CHECK(st && jbx_backward(st, g) == 0, "straight_through backward: %s", jbx_last_error());
  check_values("straight_through grad a", x->grad, 2, SH(2, 3), FL(1, 2, 3, 4, 5, 6), 0);
  CHECK(q->grad == NULL, "straight_through: b gets no gradient");
  jbx_release(st);
  /* broadcast: a [3] gets the gradient summed over the broadcast dim */
  jbx_tensor *a1 = jbx_from_floats(1, SH(3), FL(1, 2, 3));
  a1->requires_grad = true;
  st = jbx_straight_through(a1, q);
  CHECK(st && st->ndim == 2 && st->shape[0] == 2, "straight_through broadcast shape");
  CHECK(st && jbx_backward(st, g) == 0, "straight_through broadcast backward: %s", jbx_last_error());
  check_values("straight_through broadcast grad", a1->grad, 1, SH(3), FL(5, 7, 9), 0);
  jbx_release(st);
  /* only b requires grad: nothing to record */
  x->requires_grad = false;
  st = jbx_straight_through(x, q);
  CHECK(st && !st->requires_grad && !st->node, "straight_through with only b requiring grad");
  jbx_release(st), jbx_release(a1), jbx_release(g), jbx_release(x), jbx_release(q);
}

/* Exact gradients at special points (PyTorch's conventions). */
static void test_grad_conventions(void) {
  jbx_tensor *ones = jbx_full(1, SH(3), 1);
  /* maximum/minimum: a tie splits the gradient */
  jbx_tensor *a = jbx_from_floats(1, SH(3), FL(1, 2, 3)), *b = jbx_from_floats(1, SH(3), FL(3, 2, 1));
  a->requires_grad = b->requires_grad = true;
  jbx_tensor *t = jbx_maximum(a, b);
  CHECK(jbx_backward(t, ones) == 0, "maximum backward");
  check_values("maximum grad a", a->grad, 1, SH(3), FL(0, 0.5f, 1), 0);
  check_values("maximum grad b", b->grad, 1, SH(3), FL(1, 0.5f, 0), 0);
  jbx_release(t), jbx_zero_grad(a), jbx_zero_grad(b);
  t = jbx_minimum(a, b);
  CHECK(jbx_backward(t, ones) == 0, "minimum backward");
  check_values("minimum grad a", a->grad, 1, SH(3), FL(1, 0.5f, 0), 0);
  check_values("minimum grad b", b->grad, 1, SH(3), FL(0, 0.5f, 1), 0);
  jbx_release(t), jbx_zero_grad(a), jbx_zero_grad(b);
  /* clamp: gradient on [lo, hi] including the bounds, 0 outside */
  jbx_tensor *x = jbx_from_floats(1, SH(3), FL(-1, 0.5f, 2));
  x->requires_grad = true;
  t = jbx_clamp(x, -1, 1);
  CHECK(jbx_backward(t, ones) == 0, "clamp backward");
  check_values("clamp grad (bound, inside, outside)", x->grad, 1, SH(3), FL(1, 1, 0), 0);
  jbx_release(t), jbx_zero_grad(x);
  /* relu and abs: 0 at 0 */
  jbx_tensor *z = jbx_from_floats(1, SH(3), FL(-1, 0, 2));
  z->requires_grad = true;
  t = jbx_relu(z);
  CHECK(jbx_backward(t, ones) == 0, "relu backward");
  check_values("relu grad", z->grad, 1, SH(3), FL(0, 0, 1), 0);
  jbx_release(t), jbx_zero_grad(z);
  t = jbx_abs(z);
  CHECK(jbx_backward(t, ones) == 0, "abs backward");
  check_values("abs grad", z->grad, 1, SH(3), FL(-1, 0, 1), 0);
  jbx_release(t), jbx_zero_grad(z);
  /* pow: 0^b with b >= 0 gives the exponent gradient 0 (not NaN); b == 0 gives the base 0 */
  jbx_tensor *base = jbx_from_floats(1, SH(3), FL(0, 2, 0)), *ex = jbx_from_floats(1, SH(3), FL(2, 0, 0));
  base->requires_grad = ex->requires_grad = true;
  t = jbx_pow(base, ex);
  CHECK(jbx_backward(t, ones) == 0, "pow backward");
  check_values("pow grad base", base->grad, 1, SH(3), FL(0, 0, 0), 0);
  check_values("pow grad exponent", ex->grad, 1, SH(3), FL(0, 0.69314718f, 0), 1e-7);
  jbx_release(t);
  /* the exponent's gradient only when it requires grad */
  jbx_zero_grad(base), jbx_zero_grad(ex);
  ex->requires_grad = false;
  t = jbx_pow(base, ex);
  CHECK(jbx_backward(t, ones) == 0 && ex->grad == NULL && base->grad, "pow: constant exponent");
  jbx_release(t);
  /* x * x: both inputs are the same tensor, the gradient is 2x */
  jbx_zero_grad(a);
  t = jbx_mul(a, a);
  CHECK(jbx_backward(t, ones) == 0, "mul(a, a) backward");
  check_values("mul(a, a) grad", a->grad, 1, SH(3), FL(2, 4, 6), 0);
  jbx_release(t);
  jbx_release(base), jbx_release(ex), jbx_release(z), jbx_release(x), jbx_release(a), jbx_release(b);
  jbx_release(ones);
}

static void test_accumulate(void) {
  jbx_tensor *x = jbx_from_floats(1, SH(3), FL(1, -2, 3));
  jbx_tensor *s = jbx_scalar(0.5f);
  x->requires_grad = s->requires_grad = true;
  jbx_tensor *g = jbx_full(1, SH(3), 1);
  for (int pass = 0; pass < 2; pass++) {
    jbx_tensor *xx = jbx_mul(x, x), *y = jbx_add(xx, s);
    CHECK(y && jbx_backward(y, g) == 0, "backward pass %d: %s", pass, jbx_last_error());
    jbx_release(xx), jbx_release(y);
  }
  check_values("grad accumulates over two passes", x->grad, 1, SH(3), FL(4, -8, 12), 0);
  check_values("0-dim grad sums the broadcast, twice", s->grad, 0, NULL, FL(6), 0);
  jbx_release(g), jbx_release(x), jbx_release(s);
}

static void test_no_grad(void) {
  jbx_tensor *a = jbx_from_floats(2, SH(2, 2), FL(1, 2, 3, 4)), *b = jbx_from_floats(1, SH(2), FL(1, 2));
  jbx_tensor *m = jbx_from_floats(1, SH(2), FL(0, 1));
  a->requires_grad = b->requires_grad = true;
  bool prev = jbx_set_grad_enabled(false);
  int recorded = 0;
  jbx_tensor *outs[40];
  int n = 0;
  for (int k = 0; k < NBINS; k++) outs[n++] = BINS[k].op(a, b);
  for (int k = 0; k < NUNS; k++) outs[n++] = UNS[k].op(a, UNS[k].p);
  outs[n++] = jbx_where(m, a, b);
  outs[n++] = jbx_masked_fill(a, m, 0);
  for (int i = 0; i < n; i++) {
    CHECK(outs[i] != NULL, "no_grad op %d failed: %s", i, jbx_last_error());
    if (outs[i] && (outs[i]->requires_grad || outs[i]->node)) recorded++;
    jbx_release(outs[i]);
  }
  CHECK(recorded == 0, "no_grad: %d ops recorded a node", recorded);
  jbx_set_grad_enabled(prev);
  /* comparisons never record, even with grad on */
  jbx_tensor *t = jbx_gt(a, b);
  CHECK(t && !t->requires_grad && !t->node, "gt records nothing");
  jbx_release(t);
  /* and ops do record with grad on */
  t = jbx_exp(a);
  CHECK(t && t->requires_grad && t->node && !strcmp(t->node->op, "exp"), "exp records a node");
  jbx_release(t);
  jbx_release(a), jbx_release(b), jbx_release(m);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void) {
  jbx_tensor *a = jbx_zeros(2, SH(2, 3)), *b = jbx_zeros(1, SH(4)), *c = jbx_zeros(1, SH(5));
  jbx_tensor *ia = jbx_from_ints(1, SH(2), (const int32_t[]){1, 2});
  jbx_tensor *fa = jbx_zeros(1, SH(2));
  for (int k = 0; k < NBINS; k++) {
    CHECK(BINS[k].op(a, b) == NULL, "%s must fail on [2, 3] and [4]", BINS[k].name);
    char want[128];
    snprintf(want, sizeof want, "%s: shapes [2, 3] and [4] cannot broadcast (dim 1: 3 vs 4)", BINS[k].name);
    CHECK_ERROR_HAS(want);
    CHECK(BINS[k].op(NULL, b) == NULL, "%s(NULL, b)", BINS[k].name);
    snprintf(want, sizeof want, "%s: a is NULL", BINS[k].name);
    CHECK_ERROR_HAS(want);
    CHECK(BINS[k].op(a, NULL) == NULL, "%s(a, NULL)", BINS[k].name);
    snprintf(want, sizeof want, "%s: b is NULL", BINS[k].name);
    CHECK_ERROR_HAS(want);
    /* float with int32: always an error */
    CHECK(BINS[k].op(fa, ia) == NULL, "%s(float, int)", BINS[k].name);
    bool int_ok = !strcmp(BINS[k].name, "add") || !strcmp(BINS[k].name, "sub") ||
                  !strcmp(BINS[k].name, "mul") || !strcmp(BINS[k].name, "gt") ||
                  !strcmp(BINS[k].name, "lt") || !strcmp(BINS[k].name, "eq");
    if (int_ok) {
      snprintf(want, sizeof want, "%s: a is float32 and b is int32; convert one with to_dtype", BINS[k].name);
      CHECK_ERROR_HAS(want);
    } else {
      snprintf(want, sizeof want, "%s: b is int32; this op needs float32 (convert with to_dtype)", BINS[k].name);
      CHECK_ERROR_HAS(want);
      CHECK(BINS[k].op(ia, ia) == NULL, "%s(int, int)", BINS[k].name);
      snprintf(want, sizeof want, "%s: a is int32; this op needs float32", BINS[k].name);
      CHECK_ERROR_HAS(want);
    }
  }
  CHECK(jbx_add(ia, fa) == NULL, "add(int, float)");
  CHECK_ERROR_HAS("add: a is int32 and b is float32; convert one with to_dtype");
  /* a broadcast failure in a leading dim */
  jbx_tensor *x3 = jbx_zeros(3, SH(2, 1, 3)), *y3 = jbx_zeros(3, SH(5, 4, 1));
  CHECK(jbx_mul(x3, y3) == NULL, "mul [2,1,3] [5,4,1]");
  CHECK_ERROR_HAS("mul: shapes [2, 1, 3] and [5, 4, 1] cannot broadcast (dim 0: 2 vs 5)");

  for (int k = 0; k < NUNS; k++) {
    char want[128];
    const char *op = UNS[k].name;
    char base[32];
    snprintf(base, sizeof base, "%s", op);
    char *sp = strchr(base, ' ');
    if (sp) *sp = 0;
    CHECK(UNS[k].op(ia, UNS[k].p) == NULL, "%s(int)", op);
    snprintf(want, sizeof want, "%s: input is int32; this op needs float32 (convert with to_dtype)", base);
    CHECK_ERROR_HAS(want);
    CHECK(UNS[k].op(NULL, UNS[k].p) == NULL, "%s(NULL)", op);
    snprintf(want, sizeof want, "%s: input is NULL", base);
    CHECK_ERROR_HAS(want);
  }
  CHECK(jbx_clamp(a, 1, -1) == NULL, "clamp with lo > hi");
  CHECK_ERROR_HAS("clamp: bounds [1, -1] are not an interval (lo must be <= hi, neither NaN)");
  CHECK(jbx_clamp(a, NAN, 1) == NULL, "clamp with NaN");
  CHECK_ERROR_HAS("clamp: bounds [nan, 1] are not an interval");

  /* where: three shapes; NULLs; int values */
  jbx_tensor *m = jbx_zeros(1, SH(3));
  CHECK(jbx_where(m, b, c) == NULL, "where [3] [4] [5]");
  CHECK_ERROR_HAS("where: shapes [3], [4] and [5] cannot broadcast (dim 0: 3 vs 4)");
  CHECK(jbx_where(b, a, a) == NULL, "where mask [4] with [2, 3]");
  CHECK_ERROR_HAS("where: shapes [4], [2, 3] and [2, 3] cannot broadcast (dim 1: 4 vs 3)");
  CHECK(jbx_where(NULL, a, a) == NULL, "where NULL mask");
  CHECK_ERROR_HAS("where: mask is NULL");
  CHECK(jbx_where(m, NULL, a) == NULL, "where NULL a");
  CHECK_ERROR_HAS("where: a is NULL");
  CHECK(jbx_where(m, a, NULL) == NULL, "where NULL b");
  CHECK_ERROR_HAS("where: b is NULL");
  CHECK(jbx_where(m, a, ia) == NULL, "where int b");
  CHECK_ERROR_HAS("where: b is int32; this op needs float32");
  CHECK(jbx_masked_fill(a, b, 0) == NULL, "masked_fill [2,3] mask [4]");
  CHECK_ERROR_HAS("masked_fill: shapes [2, 3] and [4] cannot broadcast (dim 1: 3 vs 4)");
  CHECK(jbx_masked_fill(NULL, m, 0) == NULL, "masked_fill NULL a");
  CHECK_ERROR_HAS("masked_fill: a is NULL");
  CHECK(jbx_masked_fill(a, NULL, 0) == NULL, "masked_fill NULL mask");
  CHECK_ERROR_HAS("masked_fill: mask is NULL");
  CHECK(jbx_masked_fill(ia, m, 0) == NULL, "masked_fill int a");
  CHECK_ERROR_HAS("masked_fill: a is int32; this op needs float32");

  jbx_release(m), jbx_release(x3), jbx_release(y3), jbx_release(fa), jbx_release(ia);
  jbx_release(a), jbx_release(b), jbx_release(c);
}

int main(void) {
  jbx_rng_seed(&rng, 42);
  test_hand_values();
  test_binary_values();
  test_unary_values();
  test_int32();
  test_masks();
  test_grad_conventions();
  test_accumulate();
  test_no_grad();
  test_errors();
  return check_summary();
}
