/* The seeded generator (core/rng.c): golden values pin the stream, moments of randn and
 * rand, and the range of below. */
#include <math.h>

#include "check.h"
#include "jbx_rng.h"
#include "jbx_tensor.h"

static void test_rng(void) {
  /* Golden values pin the stream: the same seed gives the same numbers everywhere. */
  jbx_rng r;
  jbx_rng_seed(&r, 42);
  uint64_t first = jbx_rng_u64(&r);
  jbx_rng_seed(&r, 42);
  CHECK(jbx_rng_u64(&r) == first, "reseeding repeats");
  CHECK(first == 0x15780b2e0c2ec716ULL, "golden u64 %llx", (unsigned long long)first);
  CHECK_CLOSE(jbx_rng_normal(&r), -0.41536520949523315, 1e-15);
  int64_t shape[1] = {10000};
  jbx_rng_seed(&r, 7);
  jbx_tensor *n = jbx_randn(1, shape, &r);
  double s = 0, s2 = 0;
  for (int i = 0; i < 10000; i++) {
    s += jbx_get(n, i);
    s2 += jbx_get(n, i) * jbx_get(n, i);
  }
  CHECK(fabs(s / 1e4) < 0.05 && fabs(s2 / 1e4 - 1) < 0.05, "randn moments %g %g", s / 1e4, s2 / 1e4);
  jbx_tensor *u = jbx_rand(1, shape, &r);
  double lo = 1, hi = 0;
  for (int i = 0; i < 10000; i++) {
    lo = fmin(lo, jbx_get(u, i));
    hi = fmax(hi, jbx_get(u, i));
  }
  CHECK(lo >= 0 && hi < 1 && hi > 0.99 && lo < 0.01, "rand range");
  for (int i = 0; i < 1000; i++) CHECK(jbx_rng_below(&r, 3) < 3, "below");
  jbx_release(n);
  jbx_release(u);
}

int main(void) {
  test_rng();
  return check_summary();
}
