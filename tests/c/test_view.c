/* Views (core/view.c): shapes, values and strides of every view, copies where a view is
 * impossible, strided copies, and every error message. Their gradients are rows of
 * op_table.h. */
#include "check.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_tensor.h"
#include "values.h"

static void test_views(void) {
  float data[6] = {0, 1, 2, 3, 4, 5};
  int64_t shape[2] = {2, 3};
  jbx_tensor *a = jbx_from_floats(2, shape, data);
  jbx_tensor *t = jbx_transpose(a, 0, 1);
  CHECK(t->shape[0] == 3 && t->shape[1] == 2 && !jbx_is_contiguous(t), "transpose shape");
  CHECK(jbx_get(t, 1) == 3 && jbx_get(t, 2) == 1, "transpose values");
  jbx_tensor *c = jbx_contiguous(t);
  CHECK(jbx_is_contiguous(c) && jbx_f32(c)[1] == 3, "contiguous copy");
  int64_t flat[1] = {-1};
  jbx_tensor *v = jbx_view(t, 1, flat); /* not viewable: copies */
  CHECK(v->shape[0] == 6 && jbx_get(v, 1) == 3, "view of transposed");
  jbx_tensor *n = jbx_narrow(a, 1, 1, 2);
  CHECK(n->shape[1] == 2 && jbx_get(n, 0) == 1 && jbx_get(n, 3) == 5, "narrow");
  int64_t big[3] = {4, 2, 3};
  jbx_tensor *e = jbx_expand(a, 3, big);
  CHECK(jbx_numel(e) == 24 && jbx_get(e, 23) == 5, "expand");
  jbx_tensor *u = jbx_unsqueeze(a, 0), *s = jbx_squeeze(u, 0);
  CHECK(u->ndim == 3 && s->ndim == 2, "unsqueeze/squeeze");
  int64_t bad[2] = {4, 2};
  CHECK(jbx_view(a, 2, bad) == NULL, "bad view");
  CHECK_ERROR_HAS("view: cannot view [2, 3] (6 elements) as [4, 2]");
  CHECK(jbx_narrow(a, 1, 2, 2) == NULL, "bad narrow");
  CHECK_ERROR_HAS("narrow: range [2, 4) is outside dim 1 of size 3");
  CHECK(jbx_transpose(a, 0, 2) == NULL, "bad transpose");
  CHECK_ERROR_HAS("transpose: dim 2 out of range for a tensor of shape [2, 3]");
  CHECK(jbx_squeeze(a, 0) == NULL, "bad squeeze");
  CHECK_ERROR_HAS("squeeze: dim 0 of [2, 3] is not of size 1");
  int64_t wide[2] = {2, 4};
  CHECK(jbx_expand(a, 2, wide) == NULL, "bad expand");
  CHECK_ERROR_HAS("expand: dim 1 of [2, 3] has size 3, cannot expand to 4");
  int64_t new_infer[3] = {-1, 2, 3};
  CHECK(jbx_expand(a, 3, new_infer) == NULL, "-1 for a new dim");
  CHECK_ERROR_HAS("expand: size -1 is not allowed for the new leading dim 0 when expanding [2, 3] to 3 dims");
  jbx_set_message_base(1); /* as the Lua binding sets it */
  CHECK(jbx_narrow(a, 1, 2, 2) == NULL && jbx_squeeze(a, 0) == NULL, "errors with base 1");
  CHECK_ERROR_HAS("squeeze: dim 1 of [2, 3] is not of size 1");
  CHECK(jbx_narrow(a, 1, 2, 2) == NULL, "narrow with base 1");
  CHECK_ERROR_HAS("narrow: range [3, 5) is outside dim 2 of size 3");
  jbx_set_message_base(0);
  int perm[2] = {0, 0};
  CHECK(jbx_permute(a, perm) == NULL, "bad permute");
  CHECK_ERROR_HAS("permute: order is not a permutation");
  /* copy_ into a strided destination */
  jbx_tensor *z = jbx_zeros(2, shape);
  jbx_tensor *zt = jbx_transpose(z, 0, 1);
  CHECK(jbx_copy_(zt, t) == 0 && jbx_get(z, 1) == 1 && jbx_get(z, 3) == 3, "strided copy");
  jbx_tensor *gs[] = {a, t, c, v, n, e, u, s, z, zt};
  for (int i = 0; i < 10; i++) jbx_release(gs[i]);
}

/* select, squeeze_all and expand_as: the views the binding calls for t:select(),
 * t:squeeze() and t:expand_as(). */
static void test_select_squeeze_all_expand_as(void) {
  float v[6] = {1, 2, 3, 4, 5, 6};
  int64_t s23[2] = {2, 3}, s1311[4] = {1, 3, 1, 1}, s13[2] = {1, 3};
  jbx_tensor *a = jbx_from_floats(2, s23, v), *scalar = jbx_scalar(1);
  jbx_tensor *col = jbx_select(a, 1, 2);
  CHECK(col && col->ndim == 1 && col->shape[0] == 2, "select shape");
  CHECK(col && jbx_get(col, 0) == 3 && jbx_get(col, 1) == 6, "select values");
  jbx_tensor *row = jbx_select(a, -2, -1); /* last row, dims and indices from the end */
  CHECK(row && row->shape[0] == 3 && jbx_get(row, 0) == 4, "select from the end");
  CHECK(jbx_select(a, 0, 2) == NULL, "index past the end");
  CHECK_ERROR_HAS("select: index 2 is outside dim 0 of size 2 in [2, 3]");
  CHECK(jbx_select(a, 0, -3) == NULL, "index before the start");
  CHECK(jbx_select(scalar, 0, 0) == NULL, "0-dim");
  CHECK_ERROR_HAS("select: cannot select from a 0-dim tensor");

  jbx_tensor *b = jbx_from_floats(4, s1311, v);
  jbx_tensor *sq = jbx_squeeze_all(b), *sq0 = jbx_squeeze_all(scalar);
  CHECK(sq && sq->ndim == 1 && sq->shape[0] == 3, "squeeze_all drops every size-1 dim");
  CHECK(sq0 && sq0->ndim == 0, "squeeze_all of a 0-dim tensor");

  jbx_tensor *r = jbx_from_floats(2, s13, v);
  jbx_tensor *e = jbx_expand_as(r, a);
  CHECK(e && e->ndim == 2 && e->shape[0] == 2 && jbx_get(e, 3) == 1, "expand_as");
  CHECK(jbx_expand_as(a, r) == NULL, "expand_as to a smaller shape");
  CHECK_ERROR_HAS("expand: dim 0 of [2, 3] has size 2, cannot expand to 1");
  jbx_tensor *gs[] = {a, scalar, col, row, b, sq, sq0, r, e};
  for (int i = 0; i < 9; i++) jbx_release(gs[i]);
}

/* Overlapping narrows of one input, each consumed with its own weight, plus a use of the
 * whole: the gradient is the sum of every path, whichever order the narrows' backwards
 * find the input's gradient buffer in (fresh, or there to add into in place). */
static void test_narrow_gradients_accumulate(void) {
  int64_t shape[2] = {2, 6};
  for (int whole_first = 0; whole_first < 2; whole_first++) {
    jbx_tensor *x = jbx_zeros(2, shape);
    x->requires_grad = true;
    jbx_tensor *n1 = jbx_narrow(x, 1, 0, 3), *n2 = jbx_narrow(x, 1, 2, 4);
    jbx_tensor *m1 = jbx_mul_scalar(n1, 2.0f), *m2 = jbx_mul_scalar(n2, 3.0f), *m3 = jbx_mul_scalar(x, 5.0f);
    jbx_tensor *s1 = jbx_sum(m1, JBX_ALL_DIMS, false), *s2 = jbx_sum(m2, JBX_ALL_DIMS, false);
    jbx_tensor *s3 = jbx_sum(m3, JBX_ALL_DIMS, false);
    jbx_tensor *a = whole_first ? jbx_add(s3, s1) : jbx_add(s1, s2);
    jbx_tensor *l = whole_first ? jbx_add(a, s2) : jbx_add(a, s3);
    CHECK(l && jbx_backward(l, NULL) == 0, "backward: %s", jbx_last_error());
    /* columns 0-1: 2 + 5; column 2: 2 + 3 + 5; columns 3-5: 3 + 5 */
    static const double want_row[6] = {7, 7, 10, 8, 8, 8};
    double want[12];
    for (int i = 0; i < 12; i++) want[i] = want_row[i % 6];
    check_values("narrow gradients", x->grad, want, 12, 0);
    jbx_release(l);
    jbx_release(a);
    jbx_release(s1);
    jbx_release(s2);
    jbx_release(s3);
    jbx_release(m1);
    jbx_release(m2);
    jbx_release(m3);
    jbx_release(n1);
    jbx_release(n2);
    jbx_release(x);
  }
}

int main(void) {
  test_narrow_gradients_accumulate();
  test_views();
  test_select_squeeze_all_expand_as();
  return check_summary();
}
