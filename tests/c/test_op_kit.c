/* The op kit (core/ops/op_kit.c): the graph-free contiguous input, handing gradients to
 * inputs (alone and several at the end of a backward), and dtype checks. */
#include "check.h"
#include "gradcheck.h"
#include "jbx_ops.h"
#include "op_kit.h"

#define SH(...) ((const int64_t[]){__VA_ARGS__})

static void test_plain(void) {
  jbx_tensor *x = gradcheck_input(2, SH(2, 3), 1, 1), *t = jbx_transpose(x, 0, 1);
  int refs = x->refs;
  jbx_tensor *same = jbx_plain(x), *copy = jbx_plain(t);
  CHECK(same == x && x->refs == refs + 1, "a contiguous input is retained, not copied");
  CHECK(copy && jbx_is_contiguous(copy) && !copy->node && !copy->requires_grad,
        "a strided input becomes a contiguous copy without a graph");
  CHECK(copy && jbx_get(copy, 1) == jbx_get(t, 1), "same values");
  CHECK(jbx_plain(NULL) == NULL, "NULL passes through");
  jbx_release(same), jbx_release(copy), jbx_release(t), jbx_release(x);
}

static void test_give_grad(void) {
  jbx_tensor *x = gradcheck_input(1, SH(3), 1, 2), *c = jbx_zeros(1, SH(3));
  CHECK(jbx_give_grad(x, jbx_full(1, SH(3), 2.0f)) == 0 && x->grad && jbx_get(x->grad, 2) == 2,
        "given");
  CHECK(jbx_give_grad(x, jbx_full(1, SH(3), 1.0f)) == 0 && jbx_get(x->grad, 0) == 3, "accumulated");
  CHECK(jbx_give_grad(NULL, jbx_full(1, SH(3), 1.0f)) == 0, "no input: released, not an error");
  CHECK(jbx_give_grad(x, NULL) == -1, "a missing gradient for an input is a failure");
  jbx_tensor *e = gradcheck_input(1, SH(0), 1, 3);
  CHECK(jbx_give_grad(e, jbx_zeros(1, SH(0))) == 0 && !e->grad, "an empty gradient is dropped");
  CHECK(jbx_give_grad(c, jbx_full(1, SH(3), 1.0f)) == 0 && !c->grad, "a constant takes none");
  /* several at once; after a failure every gradient is released, none given */
  jbx_tensor *y = gradcheck_input(1, SH(3), 1, 4);
  jbx_tensor *ts[3] = {x, y, c}, *gs[3] = {jbx_full(1, SH(3), 1.0f), NULL, jbx_full(1, SH(3), 5.0f)};
  CHECK(jbx_give_grads(0, 3, ts, gs) == 0 && jbx_get(x->grad, 0) == 4 && !y->grad,
        "several: NULL means not wanted");
  jbx_tensor *gs2[2] = {jbx_full(1, SH(3), 1.0f), jbx_full(1, SH(3), 1.0f)};
  CHECK(jbx_give_grads(-1, 2, ts, gs2) == -1 && jbx_get(x->grad, 0) == 4 && !y->grad,
        "after a failure nothing is given");
  jbx_release(x), jbx_release(y), jbx_release(c), jbx_release(e);
}

static void test_dtypes(void) {
  jbx_tensor *i = jbx_empty(JBX_I32, 1, SH(2)), *f = jbx_zeros(1, SH(2));
  CHECK(strcmp(jbx_dtype_name(JBX_I32), "int32") == 0 && strcmp(jbx_dtype_name(JBX_F32), "float32") == 0,
        "dtype names");
  CHECK(jbx_check_f32("op", "weight", f) == 0 && jbx_check_f32("op", "bias", NULL) == 0, "float32 or absent");
  CHECK(jbx_check_f32("op", "weight", i) == -1, "int32 refused");
  CHECK_ERROR_HAS("op: weight must be float32, got int32");
  jbx_release(i), jbx_release(f);
}

int main(void) {
  test_plain();
  test_give_grad();
  test_dtypes();
  return check_summary();
}
