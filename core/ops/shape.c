/* Shape ops: concat, index_select, gather and to_dtype. The copies move 4-byte
 * elements, so float32 and int32 tensors both work; gradients flow for float32. Backward
 * of the selecting ops is a scatter-add, spread over threads by blocks of columns so no
 * two threads ever add into the same element. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fsum.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "op_kit.h"
#include "select.h"

#define CB 256 /* columns per scatter-add task */

/* Records (params: size bytes) only for float32 outputs: an int32 tensor has no gradient. */
static jbx_node *record(jbx_tensor *out, const char *op, jbx_backward_fn bw, int n,
                        jbx_tensor *const *in, const void *params, size_t size) {
  return out && out->dtype == JBX_F32 ? jbx_record_params(out, op, bw, n, in, params, size) : NULL;
}

/* The node of the selecting ops: the dim (gather) or the [outer, n, inner] geometry
 * around it (index_select, embedding); saved[0] is the contiguous int32 index. */
typedef struct {
  int dim;
  int64_t outer, n, inner;
} select_params;

/* ---------------------------------------------------------------- concat */

/* node: in[k] = the inputs; params: the dim. Each input gets its slice of the gradient. */
static int concat_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  int dim = *JBX_NODE_PARAMS(nd, int), rc = 0;
  int64_t start = 0;
  for (int k = 0; k < nd->n_in && rc == 0; k++) {
    jbx_tensor *in = nd->in[k];
    if (in->requires_grad) {
      int64_t shape[JBX_MAX_DIMS];
      memcpy(shape, gout->shape, sizeof shape);
      shape[dim] = in->shape[dim];
      jbx_tensor *slice = jbx_alias(gout, gout->ndim, shape, gout->strides,
                                    gout->offset + start * gout->strides[dim]);
      rc = jbx_give_grad(in, slice);
    }
    start += in->shape[dim];
  }
  return rc;
}

static int concat_check(int n, jbx_tensor *const *ts, int dim) {
  char s0[160], s1[160];
  if (n < 1 || !ts) return jbx_fail("concat: needs at least one tensor");
  for (int k = 0; k < n; k++)
    if (!ts[k]) return jbx_fail("concat: tensor %d is NULL", k);
  const jbx_tensor *t0 = ts[0];
  if (t0->ndim == 0) return jbx_fail("concat: cannot concatenate 0-dim tensors");
  int d = jbx_norm_dim("concat", t0, dim);
  if (d < 0) return -1;
  for (int k = 1; k < n; k++) {
    const jbx_tensor *t = ts[k];
    if (t->dtype != t0->dtype)
      return jbx_fail("concat: tensor %lld is %s, tensor %lld is %s", jbx_msg_pos(k), jbx_dtype_name(t->dtype),
                      jbx_msg_pos(0), jbx_dtype_name(t0->dtype));
    bool ok = t->ndim == t0->ndim;
    for (int i = 0; ok && i < t->ndim; i++) ok = i == d || t->shape[i] == t0->shape[i];
    if (!ok)
      return jbx_fail("concat: tensor %lld %s does not match tensor %lld %s outside dim %lld", jbx_msg_pos(k),
                      jbx_shape_str(t, s1, sizeof s1), jbx_msg_pos(0), jbx_shape_str(t0, s0, sizeof s0),
                      jbx_msg_pos(d));
  }
  return d;
}

static jbx_tensor *concat_flat(int n, jbx_tensor *const *ts, int d) {
  int64_t shape[JBX_MAX_DIMS], outer = 1, inner = 1, total = 0;
  memcpy(shape, ts[0]->shape, sizeof shape);
  for (int k = 0; k < n; k++) total += ts[k]->shape[d];
  shape[d] = total;
  for (int i = 0; i < d; i++) outer *= shape[i];
  for (int i = d + 1; i < ts[0]->ndim; i++) inner *= shape[i];
  jbx_tensor *out = jbx_empty(ts[0]->dtype, ts[0]->ndim, shape);
  if (!out) return NULL;
  uint32_t *dst = (uint32_t *)out->storage->data;
  int64_t start = 0, row = total * inner;
  for (int k = 0; k < n; k++) {
    jbx_tensor *c = jbx_plain(ts[k]);
    if (!c) {
      jbx_release(out);
      return NULL;
    }
    const uint32_t *src = (const uint32_t *)c->storage->data + c->offset;
    int64_t chunk = ts[k]->shape[d] * inner;
#pragma omp parallel for schedule(static) if (outer > 1 && outer * chunk >= JBX_PAR_MIN)
    for (int64_t o = 0; o < outer; o++)
      if (chunk) memcpy(dst + o * row + start * inner, src + o * chunk, (size_t)chunk * 4);
    start += ts[k]->shape[d];
    jbx_release(c);
  }
  return out;
}

jbx_tensor *jbx_concat(int n, jbx_tensor *const *ts, int dim) {
  int d = concat_check(n, ts, dim);
  if (d < 0) return NULL;
  jbx_tensor *out = concat_flat(n, ts, d);
  record(out, "concat", concat_backward, n, ts, &d, sizeof d);
  return out;
}

/* ---------------------------------------------------------------- row selection */

/* out[o, i, :] = a[o, idx[i], :] for o < outer, i < len (4-byte elements, rows of inner). */
static void select_rows(const uint32_t *a, uint32_t *out, const int32_t *idx, int64_t outer, int64_t n,
                        int64_t len, int64_t inner) {
#pragma omp parallel for collapse(2) schedule(static) if (outer * len * inner >= JBX_PAR_MIN)
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < len; i++)
      memcpy(out + (o * len + i) * inner, a + (o * n + idx[i]) * inner, (size_t)inner * 4);
}

/* gin[o, idx[i], :] += g[o, i, :]: each task owns one outer slice and a block of columns. */
static void scatter_rows(const float *g, float *gin, const int32_t *idx, int64_t outer, int64_t n,
                         int64_t len, int64_t inner) {
  int64_t nb = (inner + CB - 1) / CB;
#pragma omp parallel for schedule(static) if (outer * nb > 1 && outer * len * inner >= JBX_PAR_MIN)
  for (int64_t t = 0; t < outer * nb; t++) {
    int64_t o = t / nb, j0 = (t % nb) * CB, w = inner - j0 < CB ? inner - j0 : CB;
    for (int64_t i = 0; i < len; i++) {
      const float *src = g + (o * len + i) * inner + j0;
      float *dst = gin + (o * n + idx[i]) * inner + j0;
      for (int64_t j = 0; j < w; j++) dst[j] += src[j];
    }
  }
}

int64_t jbx_bad_index(const int32_t *idx, int64_t len, int64_t size) {
  for (int64_t i = 0; i < len; i++)
    if (idx[i] < 0 || idx[i] >= size) return i;
  return -1;
}

/* node: in[0] = source; saved[0] = contiguous int32 index; select_params. */
static int select_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  const select_params *p = JBX_NODE_PARAMS(nd, select_params);
  jbx_tensor *a = nd->in[0], *gc = jbx_plain(gout), *ix = nd->saved[0];
  jbx_tensor *gin = gc ? jbx_zeros0(a->ndim, a->shape) : NULL;
  if (gin)
    scatter_rows(jbx_f32(gc), jbx_f32(gin), jbx_i32(ix), p->outer, p->n, jbx_numel(ix), p->inner);
  jbx_release(gc);
  return jbx_give_grad(a, gin);
}

/* Saves the index on nd (when recorded) for the backward; returns out, or NULL when out
 * of memory. */
static jbx_tensor *save_index(jbx_tensor *out, jbx_node *nd, jbx_tensor *ix) {
  if (nd && jbx_node_save(nd, ix) < 0) {
    jbx_release(out);
    return NULL;
  }
  return out;
}

jbx_tensor *jbx_select_rows_op(const char *op, jbx_tensor *a, jbx_tensor *ix, int d, int ondim,
                               const int64_t *oshape) {
  int64_t outer = 1, inner = 1, n = a->shape[d];
  for (int i = 0; i < d; i++) outer *= a->shape[i];
  for (int i = d + 1; i < a->ndim; i++) inner *= a->shape[i];
  jbx_tensor *ac = jbx_plain(a), *out = ac ? jbx_empty(a->dtype, ondim, oshape) : NULL;
  if (out)
    select_rows((const uint32_t *)ac->storage->data + ac->offset, (uint32_t *)out->storage->data,
                jbx_i32(ix), outer, n, jbx_numel(ix), inner);
  jbx_release(ac);
  select_params p = {d, outer, n, inner};
  return save_index(out, record(out, op, select_backward, 1, &a, &p, sizeof p), ix);
}

jbx_tensor *jbx_index_select(jbx_tensor *a, int dim, jbx_tensor *index) {
  char s[160];
  if (!a || !index) {
    jbx_fail("index_select: input and index are required");
    return NULL;
  }
  if (index->dtype != JBX_I32) {
    jbx_fail("index_select: index must be int32, got %s", jbx_dtype_name(index->dtype));
    return NULL;
  }
  if (index->ndim > 1) {
    jbx_fail("index_select: index must be 1-D, got %s", jbx_shape_str(index, s, sizeof s));
    return NULL;
  }
  if (a->ndim == 0) {
    jbx_fail("index_select: cannot index a 0-dim tensor");
    return NULL;
  }
  int d = jbx_norm_dim("index_select", a, dim);
  if (d < 0) return NULL;
  jbx_tensor *ix = jbx_plain(index);
  if (!ix) return NULL;
  int64_t len = jbx_numel(ix), bad = jbx_bad_index(jbx_i32(ix), len, a->shape[d]);
  jbx_tensor *out = NULL;
  if (bad >= 0) {
    jbx_fail("index_select: index %d is out of range for dim %lld of size %lld in %s", jbx_i32(ix)[bad], jbx_msg_pos(d),
             (long long)a->shape[d], jbx_shape_str(a, s, sizeof s));
  } else {
    int64_t shape[JBX_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[d] = len;
    out = jbx_select_rows_op("index_select", a, ix, d, a->ndim, shape);
  }
  jbx_release(ix);
  return out;
}

/* ---------------------------------------------------------------- gather */

/* Walks the index in row-major order; off tracks a's offset for every dim but d. With
 * add, scatters back instead: a[...] += out[...]. */
static void gather_walk(uint32_t *a, const int64_t *astride, uint32_t *out, const int32_t *idx,
                        const jbx_tensor *ix, int d, bool add) {
  int64_t n = jbx_numel(ix), pos[JBX_MAX_DIMS] = {0}, off = 0;
  float *af = (float *)a;
  const float *of = (const float *)out;
  for (int64_t p = 0; p < n; p++) {
    int64_t at = off + (int64_t)idx[p] * astride[d];
    if (add) af[at] += of[p];
    else out[p] = a[at];
    for (int k = ix->ndim - 1; k >= 0; k--) {
      if (k != d) off += astride[k];
      if (++pos[k] < ix->shape[k]) break;
      if (k != d) off -= astride[k] * ix->shape[k];
      pos[k] = 0;
    }
  }
}

/* node: in[0] = a; saved[0] = contiguous index; select_params (the dim). */
static int gather_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  int dim = JBX_NODE_PARAMS(nd, select_params)->dim;
  jbx_tensor *a = nd->in[0], *gc = jbx_plain(gout), *ix = nd->saved[0];
  jbx_tensor *gin = gc ? jbx_zeros0(a->ndim, a->shape) : NULL;
  if (gin)
    gather_walk((uint32_t *)jbx_f32(gin), gin->strides, (uint32_t *)jbx_f32(gc), jbx_i32(ix), ix,
                dim, true);
  jbx_release(gc);
  return jbx_give_grad(a, gin);
}

jbx_tensor *jbx_gather(jbx_tensor *a, int dim, jbx_tensor *index) {
  char s[160], si[160];
  if (!a || !index) {
    jbx_fail("gather: input and index are required");
    return NULL;
  }
  if (index->dtype != JBX_I32) {
    jbx_fail("gather: index must be int32, got %s", jbx_dtype_name(index->dtype));
    return NULL;
  }
  if (a->ndim == 0) {
    jbx_fail("gather: cannot gather from a 0-dim tensor");
    return NULL;
  }
  int d = jbx_norm_dim("gather", a, dim);
  if (d < 0) return NULL;
  jbx_shape_str(a, s, sizeof s);
  jbx_shape_str(index, si, sizeof si);
  if (index->ndim != a->ndim) {
    jbx_fail("gather: index %s must have %d dims like the input %s", si, a->ndim, s);
    return NULL;
  }
  for (int i = 0; i < a->ndim; i++)
    if (i != d && index->shape[i] > a->shape[i]) {
      jbx_fail("gather: index %s is larger than the input %s in dim %lld", si, s, jbx_msg_pos(i));
      return NULL;
    }
  jbx_tensor *ix = jbx_plain(index);
  if (!ix) return NULL;
  int64_t bad = jbx_bad_index(jbx_i32(ix), jbx_numel(ix), a->shape[d]);
  if (bad >= 0) {
    jbx_fail("gather: index %d is out of range for dim %lld of size %lld in %s", jbx_i32(ix)[bad], jbx_msg_pos(d),
             (long long)a->shape[d], s);
    jbx_release(ix);
    return NULL;
  }
  jbx_tensor *ac = jbx_plain(a), *out = ac ? jbx_empty(a->dtype, ix->ndim, ix->shape) : NULL;
  if (out)
    gather_walk((uint32_t *)ac->storage->data + ac->offset, ac->strides, (uint32_t *)out->storage->data,
                jbx_i32(ix), ix, d, false);
  jbx_release(ac);
  select_params p = {.dim = d};
  out = save_index(out, record(out, "gather", gather_backward, 1, &a, &p, sizeof p), ix);
  jbx_release(ix);
  return out;
}

/* ---------------------------------------------------------------- to_dtype */

jbx_tensor *jbx_to_dtype(jbx_tensor *a, jbx_dtype dt) {
  if (!a) {
    jbx_fail("to_dtype: input is NULL");
    return NULL;
  }
  if (dt != JBX_F32 && dt != JBX_I32) {
    jbx_fail("to_dtype: unknown dtype %d", (int)dt);
    return NULL;
  }
  if (a->dtype == dt) return jbx_clone(a); /* a copy, with the graph when float32 */
  jbx_tensor *ac = jbx_plain(a), *out = ac ? jbx_empty(dt, a->ndim, a->shape) : NULL;
  int64_t n = out ? jbx_numel(out) : 0;
  if (out && dt == JBX_F32) {
    const int32_t *src = jbx_i32(ac);
    float *dst = jbx_f32(out);
    for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i];
  } else if (out) {
    /* Truncates toward zero like PyTorch; values without an int32 are an error, not UB. */
    const float *src = jbx_f32(ac);
    int32_t *dst = jbx_i32(out);
    for (int64_t i = 0; i < n; i++) {
      float v = src[i];
      if (!(v >= -2147483648.0f && v < 2147483648.0f)) {
        jbx_fail("to_dtype: element %lld is %g, which has no int32 value", (long long)i, (double)v);
        jbx_release(out);
        out = NULL;
        break;
      }
      dst[i] = (int32_t)v;
    }
  }
  jbx_release(ac);
  return out;
}
