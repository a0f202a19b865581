/* Row selection (internal to core, in shape.c), shared by index_select and embedding:
 * out[o, i, :] = a[o, ix[i], :] around dim d, with a scatter-add backward. */
#ifndef JBX_SELECT_H
#define JBX_SELECT_H
#include <stdint.h>

#include "jbx_tensor.h"

/* First index outside [0, size), or -1 when all are in range. */
int64_t jbx_bad_index(const int32_t *idx, int64_t len, int64_t size);

/* The selection of a's rows along dim d by the validated, contiguous int32 index ix, as
 * a new [oshape] tensor (ondim dims), recorded as op. */
jbx_tensor *jbx_select_rows_op(const char *op, jbx_tensor *a, jbx_tensor *ix, int d, int ondim,
                               const int64_t *oshape);

#endif
