/* Tensors (core/tensor.c): creation, its errors, and lifetime. Views, the generator and
 * the autograd engine have their own files. */
#include "check.h"
#include "jbx_error.h"
#include "jbx_ops.h"

static void test_creation(void) {
  int64_t shape[2] = {2, 3};
  jbx_tensor *z = jbx_zeros(2, shape), *f = jbx_full(2, shape, 2.5f);
  CHECK(jbx_numel(z) == 6 && jbx_is_contiguous(z), "zeros");
  CHECK(jbx_get(z, 5) == 0 && jbx_get(f, 4) == 2.5, "values");
  jbx_tensor *a = jbx_arange(0, 1, 0.25);
  CHECK(jbx_numel(a) == 4 && jbx_get(a, 3) == 0.75, "arange");
  CHECK(jbx_arange(0, 1, 0) == NULL, "zero step fails");
  CHECK_ERROR_HAS("arange: step must be non-zero");
  int64_t bad[1] = {-2};
  CHECK(jbx_empty(JBX_F32, 1, bad) == NULL, "negative size fails");
  CHECK_ERROR_HAS("negative size");
  int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  CHECK(jbx_empty(JBX_F32, 9, nine) == NULL, "9 dims fail");
  CHECK_ERROR_HAS("at most 8");
  jbx_release(z);
  jbx_release(f);
  jbx_release(a);
}

int main(void) {
  test_creation();
  return check_summary();
}
