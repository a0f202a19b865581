/* matmul: values by hand and against a naive triple loop (2-D, transposed and strided
 * operands, broadcast batches, vectors, empty sizes) and the error messages; gradient
 * checks for every operand form are rows of op_table.h. */
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_rng.h"

static jbx_rng rng;

static jbx_tensor *randn(int ndim, const int64_t *shape) { return jbx_randn(ndim, shape, &rng); }

/* Element [batch.., i, j] of t (>= 2-D) where batch indexes the full broadcast batch
 * shape of nb dims (t's own batch dims align right and broadcast from size 1). */
static double elem(const jbx_tensor *t, int nb, const int64_t *bidx, int64_t i, int64_t j) {
  int tb = t->ndim - 2;
  int64_t flat = 0;
  for (int d = 0; d < tb; d++) {
    int64_t id = t->shape[d] == 1 ? 0 : bidx[d + nb - tb];
    flat = flat * t->shape[d] + id;
  }
  flat = (flat * t->shape[tb] + i) * t->shape[tb + 1] + j;
  return jbx_get(t, flat);
}

/* Compares c = a x b (all >= 2-D) with a double-precision triple loop. */
static void check_against_naive(const char *what, jbx_tensor *a, jbx_tensor *b, jbx_tensor *c) {
  CHECK(c != NULL, "%s: %s", what, jbx_last_error());
  if (!c) return;
  int nb = c->ndim - 2;
  int64_t n = c->shape[nb], m = c->shape[nb + 1], k = a->shape[a->ndim - 1], nbatch = 1;
  for (int d = 0; d < nb; d++) nbatch *= c->shape[d];
  int bad = 0;
  double worst = 0;
  for (int64_t bi = 0; bi < nbatch; bi++) {
    int64_t bidx[JBX_MAX_DIMS], rest = bi;
    for (int d = nb - 1; d >= 0; d--) {
      bidx[d] = rest % c->shape[d];
      rest /= c->shape[d];
    }
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < m; j++) {
        double s = 0;
        for (int64_t l = 0; l < k; l++) s += elem(a, nb, bidx, i, l) * elem(b, nb, bidx, l, j);
        double got = jbx_get(c, (bi * n + i) * m + j), err = fabs(got - s);
        worst = err > worst ? err : worst;
        bad += err > 1e-4 * (1 + fabs(s));
      }
  }
  CHECK(bad == 0, "%s: %d elements differ from the naive loop (worst %.3g)", what, bad, worst);
}

static void check_shape(const char *what, jbx_tensor *t, int ndim, const int64_t *shape) {
  CHECK(t && t->ndim == ndim, "%s: ndim %d, want %d (%s)", what, t ? t->ndim : -1, ndim,
        t ? "" : jbx_last_error());
  for (int d = 0; t && d < ndim && d < t->ndim; d++)
    CHECK(t->shape[d] == shape[d], "%s: dim %d is %lld, want %lld", what, d, (long long)t->shape[d],
          (long long)shape[d]);
}

static void test_small_values(void) {
  const float av[6] = {1, 2, 3, 4, 5, 6}, bv[6] = {7, 8, 9, 10, 11, 12};
  jbx_tensor *a = jbx_from_floats(2, (int64_t[]){2, 3}, av), *b = jbx_from_floats(2, (int64_t[]){3, 2}, bv);
  jbx_tensor *c = jbx_matmul(a, b);
  const double want[4] = {58, 64, 139, 154};
  check_shape("2x3 x 3x2", c, 2, (int64_t[]){2, 2});
  for (int i = 0; c && i < 4; i++) CHECK_CLOSE(jbx_get(c, i), want[i], 1e-7);
  jbx_release(c);

  /* Vectors: dropped dims, as torch.matmul. */
  jbx_tensor *v3 = jbx_from_floats(1, (int64_t[]){3}, (float[]){1, 0, -1});
  jbx_tensor *w3 = jbx_from_floats(1, (int64_t[]){3}, (float[]){2, 3, 4});
  c = jbx_matmul(v3, w3);
  check_shape("dot", c, 0, NULL);
  if (c) CHECK_CLOSE(jbx_get(c, 0), -2, 1e-7);
  jbx_release(c);
  c = jbx_matmul(a, v3);
  check_shape("matrix x vector", c, 1, (int64_t[]){2});
  if (c) {
    CHECK_CLOSE(jbx_get(c, 0), -2, 1e-7);
    CHECK_CLOSE(jbx_get(c, 1), -2, 1e-7);
  }
  jbx_release(c);
  c = jbx_matmul(v3, b);
  check_shape("vector x matrix", c, 1, (int64_t[]){2});
  if (c) {
    CHECK_CLOSE(jbx_get(c, 0), -4, 1e-7);
    CHECK_CLOSE(jbx_get(c, 1), -4, 1e-7);
  }
  jbx_release(c);
  jbx_tensor *bb = randn(3, (int64_t[]){4, 3, 5});
  c = jbx_matmul(v3, bb);
  check_shape("vector x batch", c, 2, (int64_t[]){4, 5});
  jbx_release(c);
  jbx_tensor *bbt = jbx_transpose(bb, 1, 2);
  c = jbx_matmul(bbt, v3);
  check_shape("batch x vector", c, 2, (int64_t[]){4, 5});
  jbx_release(c);
  jbx_release(bbt);
  jbx_release(bb);
  jbx_release(v3);
  jbx_release(w3);

  /* Empty sizes. */
  jbx_tensor *e1 = jbx_empty(JBX_F32, 2, (int64_t[]){2, 0}), *e2 = jbx_empty(JBX_F32, 2, (int64_t[]){0, 3});
  c = jbx_matmul(e1, e2);
  check_shape("[2, 0] x [0, 3]", c, 2, (int64_t[]){2, 3});
  for (int i = 0; c && i < 6; i++) CHECK(jbx_get(c, i) == 0, "empty inner gives zeros");
  jbx_release(c);
  jbx_tensor *e3 = jbx_empty(JBX_F32, 2, (int64_t[]){0, 3});
  c = jbx_matmul(e3, b);
  check_shape("[0, 3] x [3, 2]", c, 2, (int64_t[]){0, 2});
  jbx_release(c);
  jbx_release(e1);
  jbx_release(e2);
  jbx_release(e3);
  jbx_release(a);
  jbx_release(b);
}

static void test_against_naive(void) {
  jbx_tensor *a = randn(2, (int64_t[]){37, 53}), *b = randn(2, (int64_t[]){53, 29});
  jbx_tensor *c = jbx_matmul(a, b);
  check_shape("37x53 x 53x29", c, 2, (int64_t[]){37, 29});
  check_against_naive("37x53 x 53x29", a, b, c);
  jbx_release(c);

  /* Transposed operands are read in place (CblasTrans). */
  jbx_tensor *at0 = randn(2, (int64_t[]){53, 37}), *bt0 = randn(2, (int64_t[]){29, 53});
  jbx_tensor *at = jbx_transpose(at0, 0, 1), *bt = jbx_transpose(bt0, 0, 1);
  c = jbx_matmul(at, bt);
  check_against_naive("A^T x B^T", at, bt, c);
  jbx_release(c);
  c = jbx_matmul(at, b);
  check_against_naive("A^T x B", at, b, c);
  jbx_release(c);

  /* A column slice (row stride 53, not contiguous) and a stride-0 expanded operand. */
  jbx_tensor *sl = jbx_narrow(a, 1, 3, 20), *b20 = jbx_narrow(b, 0, 10, 20);
  c = jbx_matmul(sl, b20);
  check_against_naive("sliced operands", sl, b20, c);
  jbx_release(c);
  jbx_tensor *row = jbx_narrow(a, 0, 0, 1), *ex = jbx_expand(row, 2, (int64_t[]){6, 53});
  c = jbx_matmul(ex, b);
  check_against_naive("expanded rows (stride 0)", ex, b, c);
  jbx_release(c);

  /* Batches: broadcast on both sides, the linear-layer fold, permuted batch dims. */
  jbx_tensor *x = randn(4, (int64_t[]){2, 3, 5, 7}), *y = randn(3, (int64_t[]){3, 7, 4});
  c = jbx_matmul(x, y);
  check_shape("batched", c, 4, (int64_t[]){2, 3, 5, 4});
  check_against_naive("[2, 3, 5, 7] x [3, 7, 4]", x, y, c);
  jbx_release(c);
  jbx_tensor *p = randn(4, (int64_t[]){4, 1, 5, 6}), *q = randn(3, (int64_t[]){3, 6, 2});
  c = jbx_matmul(p, q);
  check_shape("broadcast both", c, 4, (int64_t[]){4, 3, 5, 2});
  check_against_naive("[4, 1, 5, 6] x [3, 6, 2]", p, q, c);
  jbx_release(c);
  jbx_tensor *lin = randn(3, (int64_t[]){4, 9, 53});
  c = jbx_matmul(lin, b);
  check_against_naive("[4, 9, 53] x [53, 29] (folded)", lin, b, c);
  jbx_release(c);
  jbx_tensor *w = randn(3, (int64_t[]){2, 53, 6});
  c = jbx_matmul(a, w);
  check_against_naive("[37, 53] x [2, 53, 6]", a, w, c);
  jbx_release(c);
  int perm[4] = {1, 0, 2, 3};
  jbx_tensor *xp = jbx_permute(x, perm), *yp = randn(4, (int64_t[]){3, 2, 7, 3});
  jbx_tensor *ypt = jbx_transpose(yp, 2, 3), *ypt2 = jbx_transpose(ypt, 2, 3);
  c = jbx_matmul(xp, ypt2);
  check_against_naive("permuted batch dims", xp, ypt2, c);
  jbx_release(c);
  jbx_tensor *many = randn(3, (int64_t[]){48, 24, 24}), *many2 = randn(3, (int64_t[]){48, 24, 24});
  jbx_tensor *m2t = jbx_transpose(many2, 1, 2);
  c = jbx_matmul(many, m2t);
  check_against_naive("48 small products (threaded over the batch)", many, m2t, c);
  jbx_release(c);

  jbx_release(m2t);
  jbx_release(many);
  jbx_release(many2);
  jbx_release(ypt);
  jbx_release(ypt2);
  jbx_release(yp);
  jbx_release(xp);
  jbx_release(w);
  jbx_release(lin);
  jbx_release(p);
  jbx_release(q);
  jbx_release(x);
  jbx_release(y);
  jbx_release(row);
  jbx_release(ex);
  jbx_release(sl);
  jbx_release(b20);
  jbx_release(at);
  jbx_release(bt);
  jbx_release(at0);
  jbx_release(bt0);
  jbx_release(a);
  jbx_release(b);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void) {
  jbx_tensor *a = jbx_zeros(2, (int64_t[]){2, 3}), *b = jbx_zeros(2, (int64_t[]){4, 5});
  CHECK(jbx_matmul(a, b) == NULL, "inner mismatch");
  CHECK_ERROR_HAS("matmul: [2, 3] x [4, 5]: inner sizes 3 and 4 differ");
  jbx_tensor *v = jbx_zeros(1, (int64_t[]){4});
  CHECK(jbx_matmul(a, v) == NULL, "matrix x vector mismatch");
  CHECK_ERROR_HAS("matmul: [2, 3] x [4]: inner sizes 3 and 4 differ");
  jbx_tensor *x = jbx_zeros(3, (int64_t[]){2, 3, 4}), *y = jbx_zeros(3, (int64_t[]){5, 4, 6});
  CHECK(jbx_matmul(x, y) == NULL, "batch mismatch");
  CHECK_ERROR_HAS("matmul: [2, 3, 4] x [5, 4, 6]: batch dims do not broadcast (2 vs 5)");
  jbx_tensor *i = jbx_empty(JBX_I32, 2, (int64_t[]){3, 2});
  CHECK(jbx_matmul(a, i) == NULL, "int32 operand");
  CHECK_ERROR_HAS("matmul: [2, 3] x [3, 2]: operands must be float32, got int32 on the right");
  jbx_tensor *s = jbx_scalar(2);
  CHECK(jbx_matmul(s, a) == NULL, "0-dim operand");
  CHECK_ERROR_HAS("matmul: [] x [2, 3]: operands must have at least 1 dim");
  CHECK(jbx_matmul(NULL, a) == NULL, "NULL operand");
  CHECK_ERROR_HAS("matmul: both operands are required");
  jbx_release(s);
  jbx_release(i);
  jbx_release(x);
  jbx_release(y);
  jbx_release(v);
  jbx_release(a);
  jbx_release(b);
}

int main(void) {
  jbx_rng_seed(&rng, 42);
  test_small_values();
  test_against_naive();
  test_errors();
  return check_summary();
}
