/* The views core/view.c gained for the binding: select, squeeze_all, expand_as (values,
 * gradients, errors). */
#include "check.h"
#include "gradcheck.h"
#include "jbx_tensor.h"

static jbx_tensor *select_last_row(jbx_tensor **in, void *ctx) { return jbx_select(in[0], 0, -1); }
static jbx_tensor *squeeze_all(jbx_tensor **in, void *ctx) { return jbx_squeeze_all(in[0]); }
static jbx_tensor *expand_as_ctx(jbx_tensor **in, void *ctx) { return jbx_expand_as(in[0], ctx); }

int main(void) {
  float v[6] = {1, 2, 3, 4, 5, 6};
  int64_t s23[2] = {2, 3}, s1311[4] = {1, 3, 1, 1}, s13[2] = {1, 3};
  jbx_tensor *a = jbx_from_floats(2, s23, v);

  jbx_tensor *col = jbx_select(a, 1, 2);
  CHECK(col && col->ndim == 1 && col->shape[0] == 2, "select shape");
  CHECK(col && jbx_get(col, 0) == 3 && jbx_get(col, 1) == 6, "select values");
  jbx_release(col);
  jbx_tensor *row = jbx_select(a, -2, -1); /* last row, dims and indices from the end */
  CHECK(row && row->shape[0] == 3 && jbx_get(row, 0) == 4, "select from the end");
  jbx_release(row);
  CHECK(jbx_select(a, 0, 2) == NULL, "index past the end");
  CHECK_ERROR_HAS("select: index 2 is outside dim 0 of size 2 in [2, 3]");
  CHECK(jbx_select(a, 0, -3) == NULL, "index before the start");
  jbx_tensor *scalar = jbx_scalar(1);
  CHECK(jbx_select(scalar, 0, 0) == NULL, "0-dim");
  CHECK_ERROR_HAS("select: cannot select from a 0-dim tensor");

  jbx_tensor *b = jbx_from_floats(4, s1311, v);
  jbx_tensor *sq = jbx_squeeze_all(b);
  CHECK(sq && sq->ndim == 1 && sq->shape[0] == 3, "squeeze_all drops every size-1 dim");
  jbx_release(sq);
  sq = jbx_squeeze_all(scalar);
  CHECK(sq && sq->ndim == 0, "squeeze_all of a 0-dim tensor");
  jbx_release(sq);

  jbx_tensor *r = jbx_from_floats(2, s13, v);
  jbx_tensor *e = jbx_expand_as(r, a);
  CHECK(e && e->ndim == 2 && e->shape[0] == 2 && jbx_get(e, 3) == 1, "expand_as");
  jbx_release(e);
  CHECK(jbx_expand_as(a, r) == NULL, "expand_as to a smaller shape");
  CHECK_ERROR_HAS("expand:");

  a->requires_grad = b->requires_grad = r->requires_grad = true;
  CHECK(gradcheck("select", select_last_row, NULL, 1, &a, 1e-2, 1e-3) < 1e-3, "select gradient");
  CHECK(gradcheck("squeeze_all", squeeze_all, NULL, 1, &b, 1e-2, 1e-3) < 1e-3, "squeeze_all gradient");
  CHECK(gradcheck("expand_as", expand_as_ctx, a, 1, &r, 1e-2, 1e-3) < 1e-3, "expand_as gradient");

  jbx_release(a);
  jbx_release(b);
  jbx_release(r);
  jbx_release(scalar);
  return check_summary();
}
