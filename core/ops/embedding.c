/* Embedding lookup: rows of a weight [V, D] picked by int32 ids of any shape, giving
 * [..., D]. The rows are copied, and scatter-added back in the backward, by the row
 * selection that index_select uses too (shape.c, select.h). */
#include "jbx_error.h"
#include "jbx_ops.h"
#include "op_kit.h"
#include "select.h"

jbx_tensor *jbx_embedding(jbx_tensor *weight, jbx_tensor *ids) {
  char s[160];
  if (!weight || !ids) {
    jbx_fail("embedding: weight and ids are required");
    return NULL;
  }
  if (weight->ndim != 2 || weight->dtype != JBX_F32) {
    jbx_fail("embedding: weight must be float32 [rows, dim], got %s %s", jbx_dtype_name(weight->dtype),
             jbx_shape_str(weight, s, sizeof s));
    return NULL;
  }
  if (ids->dtype != JBX_I32) {
    jbx_fail("embedding: ids must be int32, got %s", jbx_dtype_name(ids->dtype));
    return NULL;
  }
  if (ids->ndim >= JBX_MAX_DIMS) {
    jbx_fail("embedding: ids %s have too many dims (at most %d)", jbx_shape_str(ids, s, sizeof s),
             JBX_MAX_DIMS - 1);
    return NULL;
  }
  jbx_tensor *ix = jbx_plain(ids);
  if (!ix) return NULL;
  int64_t len = jbx_numel(ix), bad = jbx_bad_index(jbx_i32(ix), len, weight->shape[0]);
  jbx_tensor *out = NULL;
  if (bad >= 0) {
    jbx_fail("embedding: id %d is out of range for a weight with %lld rows", jbx_i32(ix)[bad],
             (long long)weight->shape[0]);
  } else {
    int64_t shape[JBX_MAX_DIMS];
    for (int i = 0; i < ids->ndim; i++) shape[i] = ids->shape[i];
    shape[ids->ndim] = weight->shape[1];
    out = jbx_select_rows_op("embedding", weight, ix, 0, ids->ndim + 1, shape);
  }
  jbx_release(ix);
  return out;
}
