/* Broadcasting iteration over up to four 4-byte operands (float32 or int32), as NumPy and
 * PyTorch broadcast: shapes align at the right; a dim of size 1 (or a missing leading
 * dim) repeats. Operand 0 is the output and defines the iteration shape; the others
 * broadcast to it. Size-1 dims are dropped and dims that are contiguous for every operand
 * are merged, so same-shape contiguous operands become one flat row (the fast path) and a
 * scalar operand becomes a stride-0 row. A row kernel then sees long rows with strides it
 * can specialise on (1 or 0), and the walk between rows is an odometer (no division). */
#ifndef JBX_BROADCAST_H
#define JBX_BROADCAST_H
#include "jbx_tensor.h"

#define JBX_BCAST_MAX_OPS 4

typedef struct {
  int nops; /* operands, the output first */
  int ndim; /* after dropping size-1 dims and merging; >= 1 */
  int64_t numel;
  int64_t shape[JBX_MAX_DIMS];
  int64_t strides[JBX_BCAST_MAX_OPS][JBX_MAX_DIMS]; /* in elements; 0 where broadcast */
  char *base[JBX_BCAST_MAX_OPS];                    /* first element of each operand */
} jbx_bcast;

/* A row kernel: n elements; p[k] points at operand k's first element of the row and
 * s[k] is its stride in elements (0 when broadcast along the row). */
typedef void (*jbx_bcast_loop)(int64_t n, char **p, const int64_t *s, const void *ctx);

/* The broadcast shape of n tensors (n <= JBX_BCAST_MAX_OPS). On failure returns -1 with
 * "<op>: shapes [2, 3] and [4] cannot broadcast (dim 1: 3 vs 4)"; dim counts in the result. */
int jbx_broadcast_shape(const char *op, int n, jbx_tensor *const *ts, int *ndim, int64_t *shape);

/* Sets up the walk of ops[0] (any strides) with ops[1..nops-1] broadcast to its shape.
 * All operands must have 4-byte elements. Returns 0, or -1 when a shape does not fit. */
int jbx_bcast_init(jbx_bcast *it, int nops, jbx_tensor *const *ops);

/* Calls fn over every row. With at least 2 * grain elements (and outside another parallel
 * region) the work is split into one contiguous range per OpenMP thread, grain being the
 * least work worth a thread: ~1<<15 for an add, less for a tanh. When an operand steps
 * through the last dim with a stride other than 0 or 1 (a transpose), the last two dims
 * are walked in 16 x 16 tiles so its cache lines are reused; rows are then 16 long. */
void jbx_bcast_run(const jbx_bcast *it, jbx_bcast_loop fn, const void *ctx, int64_t grain);

#endif
