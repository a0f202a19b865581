/* linear: the reference Jukebox's dense layer (transformer/ops.py `Conv1D`, an addmm):
 * x [..., n_in] x w [n_in, n_out] + b [n_out] -> [..., n_out], with w in that layout (the
 * transpose of torch.nn.Linear's weight).
 *
 * Forward: every leading row at once in ONE jbx_sgemm_bias, the bias added as each tile of
 * the product is stored, so no second pass over the output adds it. x and w are read in
 * place whenever their last two dims form a row-major or transposed row-major matrix and
 * x's leading dims fold into one stride (sliced, transposed or batched views are not
 * copied); anything else is copied once.
 * Backward: dx = g w^T and dw = x^T g (one sgemm each over all rows), db = the column
 * sums of g, threaded over rows with per-thread partial sums added in thread order. */
#include <limits.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "fsum.h"
#include "jbx_error.h"
#include "jbx_gemm.h"
#include "jbx_ops.h"
#include "op_kit.h"

typedef struct {
  int64_t rows, n_in, n_out; /* rows: the product of x's leading dims */
} linear_params;

/* A [r, c] matrix read by sgemm in place: data, trans (stored as the transpose), ld. */
typedef struct {
  jbx_tensor *t; /* what is read: the input itself or a contiguous copy, retained */
  bool trans;
  int ld;
} gemm_mat;

/* Folds every dim of t but the last into one row dim: true, with the stride of that row
 * dim, when they step through memory as one dim (size-1 dims ignored). */
static bool fold_rows(const jbx_tensor *t, int64_t *stride) {
  int nd = t->ndim - 1;
  int64_t want = -1;
  *stride = 0;
  for (int d = nd - 1; d >= 0; d--) {
    if (t->shape[d] == 1) continue;
    if (want >= 0 && t->strides[d] != want) return false;
    if (want < 0) *stride = t->strides[d];
    want = t->strides[d] * t->shape[d];
  }
  return true;
}

/* Whether [r, c] with strides (s0, s1) is row-major (ld s0) or its transpose (ld s1). */
static bool layout(int64_t r, int64_t c, int64_t s0, int64_t s1, bool *trans, int64_t *ld) {
  int64_t c1 = c > 1 ? c : 1, r1 = r > 1 ? r : 1;
  if ((c <= 1 || s1 == 1) && (r <= 1 || s0 >= c1)) {
    *trans = false;
    *ld = r <= 1 ? c1 : s0;
  } else if ((r <= 1 || s0 == 1) && (c <= 1 || s1 >= r1)) {
    *trans = true;
    *ld = c <= 1 ? r1 : s1;
  } else {
    return false;
  }
  return *ld <= INT_MAX;
}

/* t seen as a [rows, cols] matrix (its leading dims folded into rows). */
static int gemm_mat_of(gemm_mat *m, jbx_tensor *t, int64_t rows, int64_t cols) {
  int64_t rs, ld;
  bool trans;
  if (fold_rows(t, &rs) && layout(rows, cols, rs, t->strides[t->ndim - 1], &trans, &ld)) {
    m->t = jbx_retain(t);
    m->trans = trans;
    m->ld = (int)ld;
    return 0;
  }
  m->t = jbx_plain(t);
  m->trans = false;
  m->ld = (int)(cols > 1 ? cols : 1);
  return m->t ? 0 : -1;
}

/* db[j] = sum over rows of g[r, j]: float lanes per block of rows, flushed to double,
 * per-thread partials combined in thread order (the same bits on every run). */
static int column_sums(const float *g, float *db, int64_t rows, int64_t n) {
  int T = rows > 1 && rows * n >= JBX_PAR_MIN ? omp_get_max_threads() : 1;
  if (T > rows) T = (int)rows;
  if (T < 1) T = 1;
  double *part = calloc((size_t)T * (size_t)n, sizeof *part);
  float *acc = malloc((size_t)T * (size_t)n * sizeof *acc);
  if (!part || !acc) {
    free(part);
    free(acc);
    return jbx_fail("linear backward: out of memory for the bias gradient");
  }
#pragma omp parallel num_threads(T) if (T > 1)
  {
    /* the team may be smaller than asked: split the rows over the threads that came */
    int th = omp_get_thread_num(), nth = omp_get_num_threads();
    int64_t r0 = rows * th / nth, r1 = rows * (th + 1) / nth;
    double *p = part + (size_t)th * n;
    float *a = acc + (size_t)th * n;
    for (int64_t b = r0; b < r1; b += 256) {
      int64_t e = b + 256 < r1 ? b + 256 : r1;
      memcpy(a, g + b * n, (size_t)n * sizeof *a);
      for (int64_t r = b + 1; r < e; r++) {
        const float *gr = g + r * n;
        for (int64_t j = 0; j < n; j++) a[j] += gr[j];
      }
      for (int64_t j = 0; j < n; j++) p[j] += a[j];
    }
  }
  for (int64_t j = 0; j < n; j++) {
    double s = 0;
    for (int th = 0; th < T; th++) s += part[(size_t)th * n + j];
    db[j] = (float)s;
  }
  free(part);
  free(acc);
  return 0;
}

/* node: in = {x, w, b or NULL}; linear_params. */
static int linear_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  const linear_params *p = JBX_NODE_PARAMS(nd, linear_params);
  jbx_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
  bool want_x = x->requires_grad, want_w = w->requires_grad, want_b = jbx_wants_grad(b);
  int64_t M = p->rows, K = p->n_in, N = p->n_out;
  bool empty = M == 0 || K == 0 || N == 0;
  jbx_tensor *gc = jbx_plain(gout);
  jbx_tensor *gx = want_x ? (empty ? jbx_zeros0(x->ndim, x->shape) : jbx_empty(JBX_F32, x->ndim, x->shape)) : NULL;
  jbx_tensor *gw = want_w ? (empty ? jbx_zeros0(2, w->shape) : jbx_empty(JBX_F32, 2, w->shape)) : NULL;
  jbx_tensor *gb = want_b ? jbx_empty(JBX_F32, 1, &N) : NULL;
  int rc = gc && (!want_x || gx) && (!want_w || gw) && (!want_b || gb) ? 0 : -1;
  gemm_mat X = {0}, W = {0};
  if (rc == 0 && !empty && want_w) rc = gemm_mat_of(&X, x, M, K);
  if (rc == 0 && !empty && want_x) rc = gemm_mat_of(&W, w, K, N);
  const float *g = rc == 0 ? jbx_f32(gc) : NULL;
  if (rc == 0 && !empty && want_x) /* dx [M, K] = g [M, N] w^T */
    jbx_sgemm(CblasNoTrans, W.trans ? CblasNoTrans : CblasTrans, (int)M, (int)K, (int)N, 1.0f, g,
              (int)N, jbx_f32(W.t), W.ld, 0.0f, jbx_f32(gx), (int)K);
  if (rc == 0 && !empty && want_w) /* dw [K, N] = x^T [K, M] g [M, N] */
    jbx_sgemm(X.trans ? CblasNoTrans : CblasTrans, CblasNoTrans, (int)K, (int)N, (int)M, 1.0f,
              jbx_f32(X.t), X.ld, g, (int)N, 0.0f, jbx_f32(gw), (int)N);
  if (rc == 0 && want_b) {
    if (M == 0) memset(jbx_f32(gb), 0, (size_t)N * sizeof(float));
    else if (N > 0) rc = column_sums(g, jbx_f32(gb), M, N);
  }
  jbx_release(X.t);
  jbx_release(W.t);
  jbx_release(gc);
  return jbx_give_grads(rc, 3, (jbx_tensor *[]){x, w, b}, (jbx_tensor *[]){gx, gw, gb});
}

static int check(const jbx_tensor *x, const jbx_tensor *w, const jbx_tensor *b) {
  char sx[160], sw[160], sb[160];
  if (!x || !w) return jbx_fail("linear: input and weight are required");
  jbx_shape_str(x, sx, sizeof sx);
  jbx_shape_str(w, sw, sizeof sw);
  if (jbx_check_f32("linear", "input", x) < 0 || jbx_check_f32("linear", "weight", w) < 0 ||
      jbx_check_f32("linear", "bias", b) < 0)
    return -1;
  if (w->ndim != 2) return jbx_fail("linear: weight %s must be [n_in, n_out]", sw);
  if (x->ndim == 0 || x->shape[x->ndim - 1] != w->shape[0])
    return jbx_fail("linear: input %s must end in %lld features (weight %s)", sx, (long long)w->shape[0], sw);
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[1]))
    return jbx_fail("linear: bias %s must be [%lld] to match weight %s", jbx_shape_str(b, sb, sizeof sb),
                    (long long)w->shape[1], sw);
  int64_t rows = 1;
  for (int d = 0; d < x->ndim - 1; d++) rows *= x->shape[d];
  if (rows > INT_MAX || w->shape[0] > INT_MAX || w->shape[1] > INT_MAX)
    return jbx_fail("linear: input %s x weight %s: sizes too large for BLAS", sx, sw);
  return 0;
}

jbx_tensor *jbx_linear(jbx_tensor *x, jbx_tensor *w, jbx_tensor *b) {
  if (check(x, w, b) < 0) return NULL;
  int64_t K = w->shape[0], N = w->shape[1], M = 1;
  for (int d = 0; d < x->ndim - 1; d++) M *= x->shape[d];
  int64_t shape[JBX_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = N;
  jbx_tensor *out = jbx_empty(JBX_F32, x->ndim, shape);
  if (!out) return NULL;
  float *y = jbx_f32(out);
  int rc = 0;
  if (M > 0 && N > 0) {
    jbx_tensor *bc = jbx_plain(b);
    const float *bv = bc ? jbx_f32(bc) : NULL;
    gemm_mat X = {0}, W = {0};
    if (b && !bc) rc = -1;
    if (rc == 0 && K > 0) rc = gemm_mat_of(&X, x, M, K) < 0 || gemm_mat_of(&W, w, K, N) < 0 ? -1 : 0;
    if (rc == 0 && K > 0)
      jbx_sgemm_bias(X.trans ? CblasTrans : CblasNoTrans, W.trans ? CblasTrans : CblasNoTrans, M, N, K,
                     jbx_f32(X.t), X.ld, jbx_f32(W.t), W.ld, bv, y, N);
    else if (rc == 0) /* no inputs: the bias alone, or zeros */
      for (int64_t r = 0; r < M; r++) {
        if (bv) memcpy(y + r * N, bv, (size_t)N * sizeof *y);
        else memset(y + r * N, 0, (size_t)N * sizeof *y);
      }
    jbx_release(bc);
    jbx_release(X.t);
    jbx_release(W.t);
  }
  if (rc < 0) {
    jbx_release(out);
    return NULL;
  }
  linear_params p = {M, K, N};
  jbx_tensor *in[3] = {x, w, b};
  if (jbx_needs_grad(3, in) && !JBX_RECORD(out, "linear", linear_backward, 3, in, p)) {
    jbx_release(out); /* out of memory for the node: jbx_last_error() says so */
    return NULL;
  }
  return out;
}
