/* The flat arenas of jbx_param_arena.h. */
#include "jbx_param_arena.h"

#include <stdlib.h>
#include <string.h>

#include "jbx_buffer.h"
#include "jbx_error.h"

#define SLOT_ALIGN 16 /* floats: 64 bytes */

void jbx_param_arena_free(jbx_param_arena *a) {
  if (!a) return;
  for (int i = 0; i < a->n; i++) jbx_release(a->params[i]);
  free(a->params);
  free(a->offsets);
  jbx_release(a->weights);
  jbx_release(a->grads);
  free(a);
}

int jbx_param_arena_find(const jbx_param_arena *a, const jbx_tensor *p) {
  for (int i = 0; i < a->n; i++)
    if (a->params[i] == p) return i;
  return -1;
}

jbx_tensor *jbx_param_arena_slot(const jbx_param_arena *a, jbx_tensor *flat, int i) {
  char s[160];
  if (i < 0 || i >= a->n) {
    jbx_fail("param_arena: no parameter %lld (it holds %d)", jbx_msg_pos(i), a->n);
    return NULL;
  }
  if (flat->dtype != JBX_F32 || flat->ndim != 1 || flat->shape[0] != a->total || !jbx_is_contiguous(flat)) {
    jbx_fail("param_arena: a flat tensor must be contiguous float32 [%lld], got %s", (long long)a->total,
             jbx_shape_str(flat, s, sizeof s));
    return NULL;
  }
  const jbx_tensor *p = a->params[i];
  int64_t strides[JBX_MAX_DIMS], st = 1;
  for (int d = p->ndim - 1; d >= 0; st *= p->shape[d], d--) strides[d] = st;
  return jbx_alias(flat, p->ndim, p->shape, strides, flat->offset + a->offsets[i]);
}

/* Parameter i's grad is exactly its slot of the gradient arena. */
static bool attached(const jbx_param_arena *a, int i) {
  const jbx_tensor *g = a->params[i]->grad;
  return g && g->storage == a->grads->storage && g->offset == a->offsets[i] && jbx_is_contiguous(g) &&
         jbx_same_shape(g, a->params[i]);
}

static int attach(jbx_param_arena *a, int i, bool keep_values) {
  jbx_tensor *p = a->params[i], *slot = jbx_param_arena_slot(a, a->grads, i);
  if (!slot) return -1;
  int rc = p->grad && keep_values ? jbx_copy_(slot, p->grad) : jbx_fill_(slot, 0);
  if (rc < 0) {
    jbx_release(slot);
    return -1;
  }
  jbx_release(p->grad);
  p->grad = slot;
  return 0;
}

int jbx_param_arena_collect_grads(jbx_param_arena *a) {
  for (int i = 0; i < a->n; i++)
    if (!attached(a, i) && attach(a, i, true) < 0) return -1;
  return 0;
}

/* The gradient arena is zeroed through jbx_buffer_zero: a large one gives its pages back,
 * so between steps, and in a backward until it reaches them, gradients take no memory
 * (PyTorch's zero_grad(set_to_none) has the same effect); a training step's peak then
 * holds the gradients formed so far, not all of them beside every checkpoint. */
int jbx_param_arena_zero_grads(jbx_param_arena *a) {
  jbx_buffer_zero(jbx_f32(a->grads), (size_t)a->total * sizeof(float));
  for (int i = 0; i < a->n; i++)
    if (!attached(a, i) && attach(a, i, false) < 0) return -1;
  return 0;
}

static int check_param(jbx_tensor *p, int i) {
  char s[160];
  if (!p) return jbx_fail("param_arena: parameter %lld is NULL", jbx_msg_pos(i));
  if (p->dtype != JBX_F32 || p->node)
    return jbx_fail("param_arena: parameter %lld (%s %s) must be a float32 leaf tensor", jbx_msg_pos(i),
                    jbx_dtype_name(p->dtype), jbx_shape_str(p, s, sizeof s));
  return 0;
}

jbx_param_arena *jbx_param_arena_new(jbx_tensor *const *params, int n) {
  jbx_param_arena *a = calloc(1, sizeof *a);
  if (!a || !(a->params = calloc((size_t)(n > 0 ? n : 1), sizeof *a->params)) ||
      !(a->offsets = calloc((size_t)(n > 0 ? n : 1), sizeof *a->offsets))) {
    jbx_fail("param_arena: out of memory");
    jbx_param_arena_free(a);
    return NULL;
  }
  for (int i = 0; i < n; i++) {
    if (check_param(params[i], i) < 0) {
      jbx_param_arena_free(a);
      return NULL;
    }
    if (jbx_param_arena_find(a, params[i]) >= 0) continue; /* a tied parameter, listed twice */
    a->params[a->n] = jbx_retain(params[i]);
    a->offsets[a->n++] = a->total;
    a->total += (jbx_numel(params[i]) + SLOT_ALIGN - 1) / SLOT_ALIGN * SLOT_ALIGN;
  }
  int64_t shape[1] = {a->total};
  a->weights = jbx_zeros(1, shape);
  a->grads = jbx_empty(JBX_F32, 1, shape);
  if (a->grads) jbx_buffer_zero(jbx_f32(a->grads), (size_t)a->total * sizeof(float));
  if (!a->weights || !a->grads) {
    jbx_param_arena_free(a);
    return NULL;
  }
  /* A failure here (out of memory) leaves each parameter valid, moved or not. */
  for (int i = 0; i < a->n; i++) {
    if (jbx_rebind(a->params[i], a->weights, a->offsets[i]) < 0 || attach(a, i, false) < 0) {
      jbx_param_arena_free(a);
      return NULL;
    }
  }
  a->weights->grad = jbx_retain(a->grads);
  /* The parameters' old buffers, as much memory as the model, sit in the buffer cache
   * now; a step rarely asks for their sizes, so give them back rather than keep them. */
  jbx_buffer_cache_clear();
  return a;
}
