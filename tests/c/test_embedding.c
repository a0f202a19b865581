/* embedding (core/ops/embedding.c): values for ids of any shape (0-dim too), a large
 * threaded backward against a serial loop, and every error message (gradient check: a
 * row of op_table.h). */
#include <math.h>

#include "check.h"
#include "gradcheck.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "values.h"

static void test_values(void) {
  jbx_tensor *a = ramp(2, (int64_t[]){3, 4}), *t;
  /* ids of any shape -> [..., D] */
  jbx_tensor *ids = jbx_from_ints(2, (int64_t[]){2, 2}, (int32_t[]){1, 1, 0, 2});
  t = jbx_embedding(a, ids);
  check_shape("embedding", t, 3, (int64_t[]){2, 2, 4});
  check_values("embedding", t, (double[]){4, 5, 6, 7, 4, 5, 6, 7, 0, 1, 2, 3, 8, 9, 10, 11}, 16, 0);
  jbx_release(t);
  jbx_tensor *one = jbx_from_ints(0, NULL, (int32_t[]){2});
  t = jbx_embedding(a, one);
  check_shape("embedding of a 0-dim id", t, 1, (int64_t[]){4});
  jbx_release(t);
  jbx_release(one);
  jbx_release(ids);
  jbx_release(a);
}

/* A large backward (the threaded scatter-add) against a serial loop. */
static void test_large_embedding_backward(void) {
  int64_t V = 50, D = 700, N = 400;
  jbx_tensor *wb = gradcheck_input(2, (int64_t[]){V, D}, 1.0f, 75);
  jbx_tensor *idb = jbx_empty(JBX_I32, 1, &N);
  for (int64_t i = 0; i < N; i++) jbx_i32(idb)[i] = (int32_t)((i * 7) % V);
  jbx_tensor *e = jbx_embedding(wb, idb), *gseed = gradcheck_input(2, (int64_t[]){N, D}, 1.0f, 76);
  gseed->requires_grad = false;
  CHECK(e && jbx_backward(e, gseed) == 0, "large embedding backward: %s", jbx_last_error());
  int bad = 0;
  for (int64_t v = 0; wb->grad && v < V; v++)
    for (int64_t j = 0; j < D; j++) {
      double s = 0;
      for (int64_t i = 0; i < N; i++)
        if (jbx_i32(idb)[i] == v) s += jbx_f32(gseed)[i * D + j];
      bad += fabs(jbx_f32(wb->grad)[v * D + j] - s) > 1e-4;
    }
  CHECK(wb->grad && bad == 0, "%d wrong elements in the large embedding gradient", bad);
  jbx_release(e);
  jbx_release(gseed);
  jbx_release(idb);
  jbx_release(wb);
}

static void test_errors(void) {
  jbx_tensor *v = jbx_zeros(1, (int64_t[]){3});
  jbx_tensor *ia = jbx_from_ints(2, (int64_t[]){2, 3}, (int32_t[]){0, 0, 0, 0, 0, 0});
  jbx_tensor *ix = jbx_from_ints(1, (int64_t[]){3}, (int32_t[]){0, 7, 1});
  jbx_tensor *neg = jbx_from_ints(1, (int64_t[]){1}, (int32_t[]){-1});
  jbx_tensor *fix = jbx_zeros(1, (int64_t[]){2});
  jbx_tensor *w = jbx_zeros(2, (int64_t[]){512, 4});
  jbx_tensor *ids = jbx_from_ints(2, (int64_t[]){1, 2}, (int32_t[]){3, 600});
  CHECK(jbx_embedding(w, ids) == NULL, "embedding range");
  CHECK_ERROR_HAS("embedding: id 600 is out of range for a weight with 512 rows");
  CHECK(jbx_embedding(w, neg) == NULL, "embedding negative");
  CHECK_ERROR_HAS("embedding: id -1 is out of range for a weight with 512 rows");
  CHECK(jbx_embedding(v, ix) == NULL, "embedding 1-D weight");
  CHECK_ERROR_HAS("embedding: weight must be float32 [rows, dim], got float32 [3]");
  CHECK(jbx_embedding(ia, ix) == NULL, "embedding int32 weight");
  CHECK_ERROR_HAS("embedding: weight must be float32 [rows, dim], got int32 [2, 3]");
  CHECK(jbx_embedding(w, fix) == NULL, "embedding float ids");
  CHECK_ERROR_HAS("embedding: ids must be int32, got float32");
  CHECK(jbx_embedding(NULL, ids) == NULL, "embedding NULL");
  CHECK_ERROR_HAS("embedding: weight and ids are required");
  jbx_tensor *deep = jbx_empty(JBX_I32, 8, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1});
  CHECK(jbx_embedding(w, deep) == NULL, "embedding 8-D ids");
  CHECK_ERROR_HAS("embedding: ids [1, 1, 1, 1, 1, 1, 1, 1] have too many dims (at most 7)");
  jbx_release(deep);
  jbx_release(w);
  jbx_release(ids);
  jbx_release(fix);
  jbx_release(neg);
  jbx_release(ix);
  jbx_release(ia);
  jbx_release(v);
}

int main(void) {
  test_values();
  test_large_embedding_backward();
  test_errors();
  return check_summary();
}
