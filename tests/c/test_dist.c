/* The dist room in a process no launcher started: a world of one, where every collective
 * is the identity, and the errors it can still report. (Two ranks: tests/lua/test_dist_mpi.lua.) */
#include <stdbool.h>
#include <stdint.h>

#include "check.h"
#include "jbx_dist.h"
#include "jbx_error.h"

int main(void) {
  CHECK(jbx_dist_rank() == 0 && jbx_dist_size() == 1, "rank %d of %d", jbx_dist_rank(), jbx_dist_size());
  float f[3] = {1.5f, -2, 3};
  CHECK(jbx_dist_allreduce_sum_f32(f, 3) == 0 && f[0] == 1.5f && f[1] == -2 && f[2] == 3, "sum over one");
  double d[2] = {0.1, 1e300};
  CHECK(jbx_dist_allreduce_sum_f64(d, 2) == 0 && d[0] == 0.1 && d[1] == 1e300, "doubles unchanged");
  CHECK(jbx_dist_allreduce_sum_f32(f, -1) == -1, "a negative count");
  CHECK_ERROR_HAS("dist.allreduce: negative count -1");
  bool flag = true;
  CHECK(jbx_dist_any(&flag) == 0 && flag, "any(true)");
  flag = false;
  CHECK(jbx_dist_any(&flag) == 0 && !flag, "any(false)");
  int32_t v = 42;
  CHECK(jbx_dist_broadcast(&v, sizeof v, 0) == 0 && v == 42, "broadcast from rank 0");
  CHECK(jbx_dist_broadcast(&v, sizeof v, 1) == -1, "no rank 1");
  CHECK_ERROR_HAS("dist.broadcast: root 1 is not a rank (0 to 0)");
  CHECK(jbx_dist_barrier() == 0, "barrier");
  int64_t first = -1, total = -1;
  CHECK(jbx_dist_offset(7, &first, &total) == 0 && first == 0 && total == 7, "offset %lld of %lld",
        (long long)first, (long long)total);
  jbx_dist_finish(0);
  jbx_dist_finish(1); /* twice, and after no MPI: nothing happens */
  CHECK(jbx_dist_size() == 1, "still one process");
  return check_summary();
}
