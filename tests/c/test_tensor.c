/* Tensors (core/tensor.c): creation, its errors, copy_ between any layouts, and lifetime. Views, the generator and
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

/* copy_ between every pair of layouts of one [3, 4, 5] tensor (dense, permuted, narrowed
 * and strided) puts each element where jbx_get says, on the row path and off it. */
static void test_copy_layouts(void) {
  int64_t shape[3] = {3, 4, 5}, big[3] = {6, 4, 7};
  static const int perms[3][3] = {{0, 1, 2}, {2, 1, 0}, {1, 0, 2}};
  for (int sp = 0; sp < 3; sp++)
    for (int dp = 0; dp < 3; dp++)
      for (int strided = 0; strided < 2; strided++) {
        /* src: a permuted view of a ramp (its shape permuted back to [3, 4, 5] order). */
        int64_t sshape[3];
        for (int d = 0; d < 3; d++) sshape[perms[sp][d]] = shape[d];
        jbx_tensor *base = jbx_arange(0, 60, 1), *sb = jbx_view(base, 3, sshape);
        jbx_tensor *src = jbx_permute(sb, perms[sp]);
        /* dst: dense, permuted, or a narrowed slice of a bigger tensor (inner stride 7). */
        int64_t dshape[3];
        for (int d = 0; d < 3; d++) dshape[perms[dp][d]] = shape[d];
        jbx_tensor *holder = strided ? jbx_zeros(3, big) : jbx_zeros(3, dshape);
        jbx_tensor *n0 = strided ? jbx_narrow(holder, 0, 1, 3) : jbx_retain(holder);
        jbx_tensor *n1 = strided ? jbx_narrow(n0, 2, 2, 5) : jbx_retain(n0);
        jbx_tensor *dst = strided ? jbx_retain(n1) : jbx_permute(n1, perms[dp]);
        CHECK(src && dst && jbx_copy_(dst, src) == 0, "copy_ %d %d %d: %s", sp, dp, strided, jbx_last_error());
        bool ok = true;
        for (int64_t i = 0; ok && i < 60; i++) ok = jbx_get(dst, i) == jbx_get(src, i);
        CHECK(ok, "copy_ layouts src %d dst %d strided %d: values", sp, dp, strided);
        jbx_release(dst);
        jbx_release(n1);
        jbx_release(n0);
        jbx_release(holder);
        jbx_release(src);
        jbx_release(sb);
        jbx_release(base);
      }
}

int main(void) {
  test_creation();
  test_copy_layouts();
  return check_summary();
}
