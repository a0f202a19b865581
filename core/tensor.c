/* Tensor storage, creation, inspection and strided copies. Views live in view.c,
 * the autograd engine in autograd.c. */
#include "jbx_tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jbx_buffer.h"
#include "jbx_error.h"
#include "jbx_rng.h"

static jbx_storage *storage_new(size_t nbytes) {
  jbx_storage *s = malloc(sizeof *s);
  /* 64-byte alignment suits AVX loads and keeps sgemm on its fast path. */
  void *data = nbytes ? jbx_buffer_alloc(nbytes) : NULL;
  if (!s || (nbytes && !data)) {
    free(s);
    jbx_buffer_free(data, nbytes);
    jbx_fail("out of memory allocating %zu bytes", nbytes);
    return NULL;
  }
  s->data = data;
  s->nbytes = nbytes;
  s->refs = 1;
  s->uncached = false;
  return s;
}

static void storage_release(jbx_storage *s) {
  if (s && --s->refs == 0) {
    if (s->uncached) jbx_buffer_release(s->data, s->nbytes);
    else jbx_buffer_free(s->data, s->nbytes);
    free(s);
  }
}

jbx_tensor *jbx_retain(jbx_tensor *t) {
  if (t) t->refs++;
  return t;
}

/* Pushes t (when not NULL) on the release worklist, growing it; out of memory falls
 * back to recursion for that one tensor. */
static void push_release(jbx_tensor ***stack, size_t *n, size_t *cap, jbx_tensor **local,
                         jbx_tensor *t) {
  if (!t) return;
  if (*n == *cap) {
    jbx_tensor **bigger = malloc(2 * *cap * sizeof *bigger);
    if (!bigger) {
      jbx_release(t);
      return;
    }
    memcpy(bigger, *stack, *n * sizeof *bigger);
    if (*stack != local) free(*stack);
    *stack = bigger;
    *cap *= 2;
  }
  (*stack)[(*n)++] = t;
}

/* Frees t and everything only it kept alive, with an explicit worklist: a graph can
 * be hundreds of thousands of nodes deep, too deep for recursion. */
void jbx_release(jbx_tensor *t) {
  jbx_tensor *local[64], **stack = local;
  size_t n = 0, cap = 64;
  push_release(&stack, &n, &cap, local, t);
  while (n > 0) {
    jbx_tensor *x = stack[--n];
    if (--x->refs > 0) continue;
    jbx_tensor *grad = x->grad;
    jbx_node *nd = x->node;
    storage_release(x->storage);
    free(x);
    push_release(&stack, &n, &cap, local, grad);
    if (nd) {
      for (int i = 0; i < nd->n_in; i++) push_release(&stack, &n, &cap, local, nd->in[i]);
      for (int i = 0; i < nd->n_saved; i++) push_release(&stack, &n, &cap, local, nd->saved[i]);
      if (nd->free_ctx) nd->free_ctx(nd->ctx);
      free(nd->saved);
      free(nd);
    }
  }
  if (stack != local) free(stack);
}

/* A tensor header over existing storage (retained), contiguous strides for shape. */
static jbx_tensor *tensor_over(jbx_storage *s, jbx_dtype dt, int ndim, const int64_t *shape) {
  jbx_tensor *t = calloc(1, sizeof *t);
  if (!t) {
    jbx_fail("out of memory");
    return NULL;
  }
  t->refs = 1;
  t->dtype = dt;
  t->ndim = ndim;
  int64_t stride = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    t->shape[d] = shape[d];
    t->strides[d] = stride;
    stride *= shape[d];
  }
  t->storage = s;
  s->refs++;
  return t;
}

jbx_tensor *jbx_empty(jbx_dtype dt, int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > JBX_MAX_DIMS) {
    jbx_fail("tensor: %d dims given, at most %d supported", ndim, JBX_MAX_DIMS);
    return NULL;
  }
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0) {
      jbx_fail("tensor: negative size %lld in dim %lld", (long long)shape[d], jbx_msg_pos(d));
      return NULL;
    }
    n *= shape[d];
  }
  jbx_storage *s = storage_new((size_t)n * 4);
  if (!s) return NULL;
  jbx_tensor *t = tensor_over(s, dt, ndim, shape);
  storage_release(s); /* tensor_over took its own reference */
  return t;
}

jbx_tensor *jbx_full(int ndim, const int64_t *shape, float value) {
  jbx_tensor *t = jbx_empty(JBX_F32, ndim, shape);
  if (t) {
    float *p = jbx_f32(t);
    for (int64_t i = 0, n = jbx_numel(t); i < n; i++) p[i] = value;
  }
  return t;
}

jbx_tensor *jbx_zeros(int ndim, const int64_t *shape) {
  jbx_tensor *t = jbx_empty(JBX_F32, ndim, shape);
  if (t && jbx_numel(t) > 0) memset(jbx_f32(t), 0, (size_t)jbx_numel(t) * 4);
  return t;
}

jbx_tensor *jbx_scalar(float value) { return jbx_full(0, NULL, value); }

jbx_tensor *jbx_arange(double start, double stop, double step) {
  if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step)) {
    jbx_fail("arange: step must be non-zero and bounds finite (got %g, %g, %g)", start, stop, step);
    return NULL;
  }
  double count = ceil((stop - start) / step);
  int64_t n = count > 0 ? (int64_t)count : 0;
  jbx_tensor *t = jbx_empty(JBX_F32, 1, &n);
  if (t)
    for (int64_t i = 0; i < n; i++) jbx_f32(t)[i] = (float)(start + (double)i * step);
  return t;
}

jbx_tensor *jbx_rand(int ndim, const int64_t *shape, jbx_rng *rng) {
  jbx_tensor *t = jbx_empty(JBX_F32, ndim, shape);
  if (!rng) rng = jbx_default_rng();
  if (t)
    for (int64_t i = 0, n = jbx_numel(t); i < n; i++) jbx_f32(t)[i] = (float)jbx_rng_uniform(rng);
  return t;
}

jbx_tensor *jbx_randn(int ndim, const int64_t *shape, jbx_rng *rng) {
  jbx_tensor *t = jbx_empty(JBX_F32, ndim, shape);
  if (!rng) rng = jbx_default_rng();
  if (t)
    for (int64_t i = 0, n = jbx_numel(t); i < n; i++) jbx_f32(t)[i] = (float)jbx_rng_normal(rng);
  return t;
}

jbx_tensor *jbx_from_floats(int ndim, const int64_t *shape, const float *data) {
  jbx_tensor *t = jbx_empty(JBX_F32, ndim, shape);
  if (t && jbx_numel(t) > 0) memcpy(jbx_f32(t), data, (size_t)jbx_numel(t) * 4);
  return t;
}

jbx_tensor *jbx_from_ints(int ndim, const int64_t *shape, const int32_t *data) {
  jbx_tensor *t = jbx_empty(JBX_I32, ndim, shape);
  if (t && jbx_numel(t) > 0) memcpy(jbx_i32(t), data, (size_t)jbx_numel(t) * 4);
  return t;
}

const char *jbx_dtype_name(jbx_dtype dt) { return dt == JBX_I32 ? "int32" : "float32"; }

int64_t jbx_numel(const jbx_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
  return n;
}

bool jbx_is_contiguous(const jbx_tensor *t) {
  int64_t stride = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->shape[d] != 1 && t->strides[d] != stride) return false;
    stride *= t->shape[d];
  }
  return true;
}

float *jbx_f32(const jbx_tensor *t) { return (float *)t->storage->data + t->offset; }
int32_t *jbx_i32(const jbx_tensor *t) { return (int32_t *)t->storage->data + t->offset; }

bool jbx_same_shape(const jbx_tensor *a, const jbx_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return false;
  return true;
}

int jbx_norm_dim(const char *op, const jbx_tensor *t, int dim) {
  int nd = t->ndim ? t->ndim : 1;
  int d = dim < 0 ? dim + nd : dim;
  if (d < 0 || d >= nd) {
    char s[160];
    return jbx_fail("%s: dim %d out of range for a tensor of shape %s", op, dim,
                    jbx_shape_str(t, s, sizeof s));
  }
  return d;
}

/* Storage offset of the element at row-major logical position i. */
static int64_t offset_of(const jbx_tensor *t, int64_t i) {
  int64_t off = t->offset;
  for (int d = t->ndim - 1; d >= 0; d--) {
    off += (i % t->shape[d]) * t->strides[d];
    i /= t->shape[d];
  }
  return off;
}

double jbx_get(const jbx_tensor *t, int64_t i) {
  int64_t off = offset_of(t, i);
  return t->dtype == JBX_I32 ? (double)((int32_t *)t->storage->data)[off]
                             : (double)((float *)t->storage->data)[off];
}

/* Same-shape copy (or float add, `add`) by rows of the last dim: an odometer over the
 * outer dims steps both offsets, and each row is one tight loop (a memmove when both rows
 * are dense). This is the path of views: narrow's and permute's backward, contiguous(). */
static int copy_rows(uint32_t *out, const jbx_tensor *dst, const uint32_t *in, const jbx_tensor *src, bool add) {
  int last = src->ndim - 1;
  int64_t len = src->shape[last], ss = src->strides[last], ds = dst->strides[last];
  int64_t rows = jbx_numel(src) / len, idx[JBX_MAX_DIMS] = {0}, soff = src->offset, doff = dst->offset;
  for (int64_t r = 0; r < rows; r++) {
    if (add) {
      float *o = (float *)out + doff;
      const float *v = (const float *)in + soff;
      for (int64_t i = 0; i < len; i++) o[i * ds] += v[i * ss];
    } else if (ss == 1 && ds == 1) {
      memmove(out + doff, in + soff, (size_t)len * 4);
    } else {
      for (int64_t i = 0; i < len; i++) out[doff + i * ds] = in[soff + i * ss];
    }
    for (int d = last - 1; d >= 0; d--) {
      soff += src->strides[d];
      doff += dst->strides[d];
      if (++idx[d] < src->shape[d]) break;
      soff -= src->strides[d] * src->shape[d];
      doff -= dst->strides[d] * dst->shape[d];
      idx[d] = 0;
    }
  }
  return 0;
}

/* Walks src in row-major order with an odometer over its strides (no division per element). */
int jbx_copy_(jbx_tensor *dst, const jbx_tensor *src) {
  int64_t n = jbx_numel(src);
  if (jbx_numel(dst) != n) {
    char a[160], b[160];
    return jbx_fail("copy: destination %s and source %s differ in size", jbx_shape_str(dst, a, sizeof a),
                    jbx_shape_str(src, b, sizeof b));
  }
  if (dst->dtype != src->dtype) return jbx_fail("copy: dtypes differ");
  if (n == 0) return 0;
  uint32_t *out = (uint32_t *)dst->storage->data, *in = (uint32_t *)src->storage->data;
  if (jbx_is_contiguous(dst) && jbx_is_contiguous(src)) {
    memmove(out + dst->offset, in + src->offset, (size_t)n * 4);
    return 0;
  }
  if (jbx_same_shape(dst, src) && dst->ndim > 0) return copy_rows(out, dst, in, src, false);
  int64_t idx[JBX_MAX_DIMS] = {0}, soff = src->offset;
  bool dcont = jbx_is_contiguous(dst);
  int last = src->ndim - 1;
  for (int64_t i = 0; i < n; i++) {
    out[dcont ? dst->offset + i : offset_of(dst, i)] = in[soff];
    for (int d = last; d >= 0; d--) {
      soff += src->strides[d];
      if (++idx[d] < src->shape[d]) break;
      soff -= src->strides[d] * src->shape[d];
      idx[d] = 0;
    }
  }
  return 0;
}

int jbx_add_into_(jbx_tensor *dst, const jbx_tensor *src) {
  char a[160], b[160];
  if (!jbx_same_shape(dst, src))
    return jbx_fail("add_into: destination %s and source %s differ in shape", jbx_shape_str(dst, a, sizeof a),
                    jbx_shape_str(src, b, sizeof b));
  if (dst->dtype != JBX_F32 || src->dtype != JBX_F32) return jbx_fail("add_into: both must be float32");
  if (jbx_numel(dst) == 0) return 0;
  if (dst->ndim == 0) {
    ((float *)dst->storage->data)[dst->offset] += ((const float *)src->storage->data)[src->offset];
    return 0;
  }
  return copy_rows(dst->storage->data, dst, src->storage->data, src, true);
}

int jbx_fill_(jbx_tensor *t, float value) {
  if (t->dtype != JBX_F32) return jbx_fail("fill: tensor is int32");
  int64_t n = jbx_numel(t);
  float *base = (float *)t->storage->data;
  for (int64_t i = 0; i < n; i++) base[offset_of(t, i)] = value;
  return 0;
}

/* Header sharing t's storage with the given shape/strides/offset (for views). */
jbx_tensor *jbx_alias(jbx_tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                      int64_t offset) {
  jbx_tensor *v = tensor_over(t->storage, t->dtype, ndim, shape);
  if (!v) return NULL;
  for (int d = 0; d < ndim; d++) v->strides[d] = strides[d];
  v->offset = offset;
  return v;
}

int jbx_rebind(jbx_tensor *t, jbx_tensor *base, int64_t offset) {
  char a[160], b[160];
  int64_t n = jbx_numel(t);
  if (t->dtype != base->dtype || !jbx_is_contiguous(base) || offset < 0 || offset + n > jbx_numel(base))
    return jbx_fail("rebind: tensor %s does not fit at offset %lld of %s", jbx_shape_str(t, a, sizeof a),
                    (long long)offset, jbx_shape_str(base, b, sizeof b));
  int64_t strides[JBX_MAX_DIMS], s = 1;
  for (int d = t->ndim - 1; d >= 0; s *= t->shape[d], d--) strides[d] = s;
  jbx_tensor *slot = jbx_alias(base, t->ndim, t->shape, strides, base->offset + offset);
  if (!slot) return -1;
  int rc = jbx_copy_(slot, t);
  if (rc == 0) {
    base->storage->refs++;
    storage_release(t->storage);
    t->storage = base->storage;
    t->offset = slot->offset;
    memcpy(t->strides, strides, sizeof strides);
  }
  jbx_release(slot);
  return rc;
}
