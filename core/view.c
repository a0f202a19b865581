/* Views: new headers over the same storage, each differentiable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jbx_error.h"
#include "jbx_tensor.h"

static int view_backward(jbx_node *n, jbx_tensor *out, jbx_tensor *g) {
  jbx_tensor *in = n->in[0];
  jbx_tensor *gv = jbx_view(g, in->ndim, in->shape);
  int rc = gv ? jbx_accum_grad(in, gv) : -1;
  jbx_release(gv);
  return rc;
}

jbx_tensor *jbx_view(jbx_tensor *t, int ndim, const int64_t *shape_in) {
  char s[160];
  if (ndim < 0 || ndim > JBX_MAX_DIMS) {
    jbx_fail("view: %d dims given, at most %d supported", ndim, JBX_MAX_DIMS);
    return NULL;
  }
  int64_t shape[JBX_MAX_DIMS], known = 1, n = jbx_numel(t);
  int infer = -1;
  for (int d = 0; d < ndim; d++) {
    shape[d] = shape_in[d];
    if (shape[d] == -1 && infer < 0) infer = d;
    else if (shape[d] < 0) {
      jbx_fail("view: bad size %lld in dim %lld (one -1 allowed)", (long long)shape[d], jbx_msg_pos(d));
      return NULL;
    } else known *= shape[d];
  }
  if (infer >= 0) shape[infer] = known ? n / known : 0;
  int64_t total = 1;
  for (int d = 0; d < ndim; d++) total *= shape[d];
  if (total != n) {
    char want[160] = "[";
    for (int d = 0; d < ndim; d++)
      snprintf(want + strlen(want), sizeof want - strlen(want), d ? ", %lld" : "%lld", (long long)shape_in[d]);
    strncat(want, "]", sizeof want - strlen(want) - 1);
    jbx_fail("view: cannot view %s (%lld elements) as %s", jbx_shape_str(t, s, sizeof s), (long long)n, want);
    return NULL;
  }
  jbx_tensor *c = jbx_contiguous(t);
  if (!c) return NULL;
  int64_t strides[JBX_MAX_DIMS], st = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    strides[d] = st;
    st *= shape[d];
  }
  jbx_tensor *v = jbx_alias(c, ndim, shape, strides, c->offset);
  if (v && jbx_needs_grad(1, &c)) jbx_record(v, "view", view_backward, 1, &c);
  jbx_release(c);
  return v;
}

typedef struct {
  int perm[JBX_MAX_DIMS];
} permute_params;

static int permute_backward(jbx_node *n, jbx_tensor *out, jbx_tensor *g) {
  const permute_params *p = JBX_NODE_PARAMS(n, permute_params);
  int inv[JBX_MAX_DIMS];
  for (int d = 0; d < out->ndim; d++) inv[p->perm[d]] = d;
  jbx_tensor *gp = jbx_permute(g, inv);
  int rc = gp ? jbx_accum_grad(n->in[0], gp) : -1;
  jbx_release(gp);
  return rc;
}

jbx_tensor *jbx_permute(jbx_tensor *t, const int *perm) {
  int64_t shape[JBX_MAX_DIMS], strides[JBX_MAX_DIMS];
  bool seen[JBX_MAX_DIMS] = {false};
  for (int d = 0; d < t->ndim; d++) {
    int p = perm[d];
    if (p < 0 || p >= t->ndim || seen[p]) {
      char s[160];
      jbx_fail("permute: order is not a permutation of the %d dims of %s", t->ndim,
               jbx_shape_str(t, s, sizeof s));
      return NULL;
    }
    seen[p] = true;
    shape[d] = t->shape[p];
    strides[d] = t->strides[p];
  }
  jbx_tensor *v = jbx_alias(t, t->ndim, shape, strides, t->offset);
  permute_params p = {{0}};
  memcpy(p.perm, perm, (size_t)t->ndim * sizeof *perm);
  if (v) JBX_RECORD(v, "permute", permute_backward, 1, &t, p);
  return v;
}

jbx_tensor *jbx_transpose(jbx_tensor *t, int d0, int d1) {
  int a = jbx_norm_dim("transpose", t, d0), b = a < 0 ? -1 : jbx_norm_dim("transpose", t, d1);
  if (a < 0 || b < 0) return NULL;
  int perm[JBX_MAX_DIMS];
  for (int d = 0; d < t->ndim; d++) perm[d] = d;
  perm[a] = b;
  perm[b] = a;
  return jbx_permute(t, perm);
}

typedef struct {
  int dim;
  int64_t start, length;
} narrow_params;

static int narrow_backward(jbx_node *n, jbx_tensor *out, jbx_tensor *g) {
  const narrow_params *p = JBX_NODE_PARAMS(n, narrow_params);
  jbx_tensor *in = n->in[0];
  if (!in->requires_grad) return 0;
  /* Narrows of one tensor (q, k and v of one projection) each fill their own slice: once
   * the input has a gradient buffer (its own, contiguous), add into that slice in place
   * instead of building and adding a full-size tensor of zeros. */
  if (in->grad && jbx_is_contiguous(in->grad)) {
    jbx_tensor *slot = jbx_narrow(in->grad, p->dim, p->start, p->length);
    int rc = slot ? jbx_add_into_(slot, g) : -1;
    jbx_release(slot);
    return rc;
  }
  jbx_tensor *full = jbx_zeros(in->ndim, in->shape);
  if (!full) return -1;
  jbx_tensor *slot = jbx_narrow(full, p->dim, p->start, p->length);
  int rc = slot ? jbx_copy_(slot, g) : -1;
  if (rc == 0) rc = jbx_accum_grad(in, full);
  jbx_release(slot);
  jbx_release(full);
  return rc;
}

jbx_tensor *jbx_narrow(jbx_tensor *t, int dim, int64_t start, int64_t length) {
  int d = jbx_norm_dim("narrow", t, dim);
  if (d < 0) return NULL;
  if (t->ndim == 0) {
    jbx_fail("narrow: cannot narrow a 0-dim tensor");
    return NULL;
  }
  if (start < 0) start += t->shape[d];
  if (start < 0 || length < 0 || start + length > t->shape[d]) {
    char s[160];
    jbx_fail("narrow: range [%lld, %lld) is outside dim %lld of size %lld in %s", jbx_msg_pos(start),
             jbx_msg_pos(start + length), jbx_msg_pos(d), (long long)t->shape[d], jbx_shape_str(t, s, sizeof s));
    return NULL;
  }
  int64_t shape[JBX_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  shape[d] = length;
  jbx_tensor *v = jbx_alias(t, t->ndim, shape, t->strides, t->offset + start * t->strides[d]);
  narrow_params p = {d, start, length};
  if (v) JBX_RECORD(v, "narrow", narrow_backward, 1, &t, p);
  return v;
}

/* The gradient of an expanded view sums over the broadcast dims: accum_grad does that. */
static int pass_backward(jbx_node *n, jbx_tensor *out, jbx_tensor *g) {
  return jbx_accum_grad(n->in[0], g);
}

jbx_tensor *jbx_expand(jbx_tensor *t, int ndim, const int64_t *shape) {
  char s[160];
  if (ndim < t->ndim || ndim > JBX_MAX_DIMS) {
    jbx_fail("expand: cannot expand %s to %d dims", jbx_shape_str(t, s, sizeof s), ndim);
    return NULL;
  }
  int64_t strides[JBX_MAX_DIMS], out_shape[JBX_MAX_DIMS];
  int lead = ndim - t->ndim;
  for (int d = 0; d < ndim; d++) {
    if (d < lead && shape[d] == -1) { /* as PyTorch: -1 keeps a size, and a new dim has none */
      jbx_fail("expand: size -1 is not allowed for the new leading dim %lld when expanding %s to %d dims",
               jbx_msg_pos(d), jbx_shape_str(t, s, sizeof s), ndim);
      return NULL;
    }
    int64_t have = d < lead ? 1 : t->shape[d - lead];
    int64_t want = shape[d] == -1 ? have : shape[d];
    if (have != want && have != 1) {
      jbx_fail("expand: dim %lld of %s has size %lld, cannot expand to %lld", jbx_msg_pos(d - lead),
               jbx_shape_str(t, s, sizeof s), (long long)have, (long long)want);
      return NULL;
    }
    out_shape[d] = want;
    strides[d] = (d < lead || have != want) ? 0 : t->strides[d - lead];
  }
  jbx_tensor *v = jbx_alias(t, ndim, out_shape, strides, t->offset);
  if (v && jbx_needs_grad(1, &t)) jbx_record(v, "expand", pass_backward, 1, &t);
  return v;
}

jbx_tensor *jbx_unsqueeze(jbx_tensor *t, int dim) {
  int d = dim < 0 ? dim + t->ndim + 1 : dim;
  if (d < 0 || d > t->ndim || t->ndim >= JBX_MAX_DIMS) {
    char s[160];
    jbx_fail("unsqueeze: dim %d out of range for %s", dim, jbx_shape_str(t, s, sizeof s));
    return NULL;
  }
  int64_t shape[JBX_MAX_DIMS];
  for (int i = 0, j = 0; i <= t->ndim; i++) shape[i] = i == d ? 1 : t->shape[j++];
  return jbx_view(t, t->ndim + 1, shape);
}

jbx_tensor *jbx_squeeze(jbx_tensor *t, int dim) {
  int d = jbx_norm_dim("squeeze", t, dim);
  if (d < 0) return NULL;
  if (t->ndim == 0 || t->shape[d] != 1) {
    char s[160];
    jbx_fail("squeeze: dim %lld of %s is not of size 1", jbx_msg_pos(d), jbx_shape_str(t, s, sizeof s));
    return NULL;
  }
  int64_t shape[JBX_MAX_DIMS];
  for (int i = 0, j = 0; i < t->ndim; i++)
    if (i != d) shape[j++] = t->shape[i];
  return jbx_view(t, t->ndim - 1, shape);
}

jbx_tensor *jbx_clone(jbx_tensor *t) {
  jbx_tensor *c = jbx_empty(t->dtype, t->ndim, t->shape);
  if (!c || jbx_copy_(c, t) < 0) {
    jbx_release(c);
    return NULL;
  }
  if (jbx_needs_grad(1, &t)) jbx_record(c, "clone", pass_backward, 1, &t);
  return c;
}

jbx_tensor *jbx_contiguous(jbx_tensor *t) {
  return jbx_is_contiguous(t) ? jbx_retain(t) : jbx_clone(t);
}

jbx_tensor *jbx_detach(jbx_tensor *t) { return jbx_alias(t, t->ndim, t->shape, t->strides, t->offset); }

jbx_tensor *jbx_select(jbx_tensor *t, int dim, int64_t index) {
  if (t->ndim == 0) {
    jbx_fail("select: cannot select from a 0-dim tensor");
    return NULL;
  }
  int d = jbx_norm_dim("select", t, dim);
  if (d < 0) return NULL;
  int64_t size = t->shape[d], i = index < 0 ? index + size : index;
  if (i < 0 || i >= size) {
    char s[160];
    jbx_fail("select: index %lld is outside dim %lld of size %lld in %s", index < 0 ? (long long)index : jbx_msg_pos(index),
             jbx_msg_pos(d), (long long)size, jbx_shape_str(t, s, sizeof s));
    return NULL;
  }
  jbx_tensor *slice = jbx_narrow(t, d, i, 1);
  jbx_tensor *r = slice ? jbx_squeeze(slice, d) : NULL;
  jbx_release(slice);
  return r;
}

jbx_tensor *jbx_squeeze_all(jbx_tensor *t) {
  int64_t shape[JBX_MAX_DIMS];
  int n = 0;
  for (int d = 0; d < t->ndim; d++)
    if (t->shape[d] != 1) shape[n++] = t->shape[d];
  return jbx_view(t, n, shape);
}

jbx_tensor *jbx_expand_as(jbx_tensor *t, const jbx_tensor *other) {
  return jbx_expand(t, other->ndim, other->shape);
}
