/* Reverse-mode autograd: ops record a node on their output; jbx_backward orders the
 * graph topologically and runs each node's backward once, in reverse. Like PyTorch,
 * the graph is freed by the pass (saved tensors released), and inner gradients too. */
#include <stdlib.h>
#include <string.h>

#include "jbx_error.h"
#include "jbx_tensor.h"

static _Thread_local bool grad_disabled;

bool jbx_grad_enabled(void) { return !grad_disabled; }

bool jbx_set_grad_enabled(bool on) {
  bool prev = !grad_disabled;
  grad_disabled = !on;
  return prev;
}

bool jbx_needs_grad(int n, jbx_tensor *const *inputs) {
  if (grad_disabled) return false;
  for (int i = 0; i < n; i++)
    if (inputs[i] && inputs[i]->requires_grad) return true;
  return false;
}

jbx_node *jbx_record_params(jbx_tensor *out, const char *op, jbx_backward_fn bw, int n,
                            jbx_tensor *const *inputs, const void *params, size_t size) {
  if (!out || !jbx_needs_grad(n, inputs)) return NULL;
  /* One block: the node, its parameters, then its input array (pointer-aligned). */
  size_t in_at = offsetof(jbx_node, params) + (size + sizeof(void *) - 1) / sizeof(void *) *
                                                  sizeof(void *);
  jbx_node *node = calloc(1, in_at + (size_t)n * sizeof(jbx_tensor *));
  if (!node) {
    jbx_fail("%s: out of memory recording the graph", op);
    return NULL;
  }
  node->op = op;
  node->backward = bw;
  node->n_in = n;
  node->in = (jbx_tensor **)((char *)node + in_at);
  for (int i = 0; i < n; i++) node->in[i] = jbx_retain(inputs[i]);
  node->params_size = size;
  if (size) memcpy(node->params, params, size);
  out->node = node;
  out->requires_grad = true;
  return node;
}

jbx_node *jbx_record(jbx_tensor *out, const char *op, jbx_backward_fn bw, int n,
                     jbx_tensor *const *inputs) {
  return jbx_record_params(out, op, bw, n, inputs, NULL, 0);
}

const void *jbx_node_params(const jbx_node *node, size_t size) {
  /* A mismatch is a programming error in the op: its record and backward disagree. */
  if (node->params_size != size) {
    jbx_fail("%s: node parameters are %zu bytes, read as %zu", node->op, node->params_size, size);
    abort();
  }
  return node->params;
}

int jbx_node_save(jbx_node *node, jbx_tensor *t) {
  jbx_tensor **p = realloc(node->saved, (size_t)(node->n_saved + 1) * sizeof *p);
  if (!p) return jbx_fail("%s: out of memory saving a tensor for the backward", node->op);
  node->saved = p;
  node->saved[node->n_saved++] = jbx_retain(t);
  return 0;
}

/* Sums g over the dims where t is broadcast (missing leading dims or size 1). */
static jbx_tensor *sum_to_shape(jbx_tensor *g, const jbx_tensor *t) {
  jbx_tensor *r = jbx_zeros(t->ndim, t->shape);
  if (!r) return NULL;
  int lead = g->ndim - t->ndim;
  int64_t rstride[JBX_MAX_DIMS] = {0};
  for (int d = lead; d < g->ndim; d++)
    rstride[d] = t->shape[d - lead] == 1 ? 0 : r->strides[d - lead];
  int64_t idx[JBX_MAX_DIMS] = {0}, goff = g->offset, roff = 0, n = jbx_numel(g);
  const float *gd = (const float *)g->storage->data;
  float *rd = jbx_f32(r);
  for (int64_t i = 0; i < n; i++) {
    rd[roff] += gd[goff];
    for (int d = g->ndim - 1; d >= 0; d--) {
      goff += g->strides[d];
      roff += rstride[d];
      if (++idx[d] < g->shape[d]) break;
      goff -= g->strides[d] * g->shape[d];
      roff -= rstride[d] * g->shape[d];
      idx[d] = 0;
    }
  }
  return r;
}

int jbx_accum_grad(jbx_tensor *t, jbx_tensor *g) {
  if (!t->requires_grad) return 0;
  char a[160], b[160];
  jbx_tensor *fit;
  if (jbx_same_shape(t, g)) {
    fit = jbx_contiguous(g);
  } else {
    bool ok = g->ndim >= t->ndim;
    for (int d = 0; ok && d < t->ndim; d++) {
      int64_t gs = g->shape[g->ndim - t->ndim + d];
      ok = t->shape[d] == gs || t->shape[d] == 1;
    }
    if (!ok)
      return jbx_fail("backward: gradient %s does not fit tensor %s", jbx_shape_str(g, a, sizeof a),
                      jbx_shape_str(t, b, sizeof b));
    fit = sum_to_shape(g, t);
  }
  if (!fit) return -1;
  if (!t->grad) {
    /* The gradient needs a buffer of its own (later accumulations add into it in place).
     * A contiguous g that nobody else holds or views is adopted instead of copied. */
    bool own = fit != g || (g->refs == 2 && g->storage->refs == 1 && !g->requires_grad);
    t->grad = own ? fit : jbx_clone(fit);
    if (t->grad != fit) jbx_release(fit);
    if (!t->grad) return -1;
    t->grad->requires_grad = false;
    return 0;
  }
  float *dst = jbx_f32(t->grad);
  const float *src = jbx_f32(fit);
  for (int64_t i = 0, n = jbx_numel(fit); i < n; i++) dst[i] += src[i];
  jbx_release(fit);
  return 0;
}

void jbx_zero_grad(jbx_tensor *t) {
  jbx_release(t->grad);
  t->grad = NULL;
}

/* ---- topological order with an explicit stack (graphs can be thousands deep) ---- */
typedef struct {
  jbx_tensor **keys;
  size_t cap;
} ptr_set;

static bool set_insert(ptr_set *s, jbx_tensor *p) {
  size_t h = ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ULL;
  for (size_t i = h & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
    if (s->keys[i] == p) return false;
    if (!s->keys[i]) {
      s->keys[i] = p;
      return true;
    }
  }
}

typedef struct {
  jbx_tensor **items;
  size_t n, cap;
} tensor_list;

static int list_push(tensor_list *l, jbx_tensor *t) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 256;
    jbx_tensor **p = realloc(l->items, cap * sizeof *p);
    if (!p) return jbx_fail("backward: out of memory");
    l->items = p;
    l->cap = cap;
  }
  l->items[l->n++] = t;
  return 0;
}

/* Post-order DFS: every tensor comes after all tensors it depends on. */
static int topo_order(jbx_tensor *root, tensor_list *order) {
  tensor_list stack = {0}, child_pos = {0};
  ptr_set seen = {0};
  int rc = 0;
  seen.cap = 1024;
  seen.keys = calloc(seen.cap, sizeof *seen.keys);
  size_t count = 0;
  if (!seen.keys) return jbx_fail("backward: out of memory");
  set_insert(&seen, root);
  count++;
  /* child_pos stores, per stack entry, the next input index to visit (as a pointer-sized int). */
  if (list_push(&stack, root) || list_push(&child_pos, NULL)) rc = -1;
  while (rc == 0 && stack.n) {
    jbx_tensor *t = stack.items[stack.n - 1];
    uintptr_t k = (uintptr_t)child_pos.items[child_pos.n - 1];
    jbx_node *nd = t->node;
    if (nd && k < (uintptr_t)nd->n_in) {
      child_pos.items[child_pos.n - 1] = (jbx_tensor *)(k + 1);
      jbx_tensor *c = nd->in[k];
      if (c && c->requires_grad) {
        if (2 * (count + 1) > seen.cap) { /* grow and rehash */
          ptr_set bigger = {calloc(seen.cap * 2, sizeof *seen.keys), seen.cap * 2};
          if (!bigger.keys) { rc = jbx_fail("backward: out of memory"); break; }
          for (size_t i = 0; i < seen.cap; i++)
            if (seen.keys[i]) set_insert(&bigger, seen.keys[i]);
          free(seen.keys);
          seen = bigger;
        }
        if (set_insert(&seen, c)) {
          count++;
          if (list_push(&stack, c) || list_push(&child_pos, NULL)) rc = -1;
        }
      }
    } else {
      stack.n--;
      child_pos.n--;
      /* Held until the pass ends: spending a node may drop the last other reference. */
      if (list_push(order, jbx_retain(t))) {
        jbx_release(t);
        rc = -1;
      }
    }
  }
  free(stack.items);
  free(child_pos.items);
  free(seen.keys);
  return rc;
}

/* Releases what a node saved: the graph behind it is spent. */
static void spend_node(jbx_node *n) {
  for (int i = 0; i < n->n_in; i++) {
    jbx_release(n->in[i]);
    n->in[i] = NULL;
  }
  for (int i = 0; i < n->n_saved; i++) jbx_release(n->saved[i]);
  free(n->saved);
  n->saved = NULL;
  n->n_saved = 0;
  if (n->free_ctx) n->free_ctx(n->ctx);
  n->ctx = NULL;
  n->free_ctx = NULL;
  n->n_in = 0;
  n->backward = NULL;
}

int jbx_backward(jbx_tensor *root, jbx_tensor *grad) {
  char s[160];
  if (!root->requires_grad)
    return jbx_fail("backward: the tensor %s does not require grad (no input has requires_grad)",
                    jbx_shape_str(root, s, sizeof s));
  if (root->node && !root->node->backward)
    return jbx_fail("backward: the graph of '%s' was already freed by an earlier backward; "
                    "run the forward again", root->node->op);
  jbx_tensor *seed = NULL;
  if (grad) {
    if (!jbx_same_shape(grad, root)) {
      char s2[160];
      return jbx_fail("backward: gradient %s does not match the tensor %s", jbx_shape_str(grad, s, sizeof s),
                      jbx_shape_str(root, s2, sizeof s2));
    }
    seed = jbx_retain(grad);
  } else {
    if (jbx_numel(root) != 1)
      return jbx_fail("backward: the tensor %s has more than one element; pass a gradient",
                      jbx_shape_str(root, s, sizeof s));
    seed = jbx_full(root->ndim, root->shape, 1.0f);
  }
  bool prev = jbx_set_grad_enabled(false);
  int rc = jbx_accum_grad(root, seed);
  jbx_release(seed);
  tensor_list order = {0};
  if (rc == 0) rc = topo_order(root, &order);
  for (size_t i = order.n; rc == 0 && i-- > 0;) {
    jbx_tensor *t = order.items[i];
    jbx_node *nd = t->node;
    if (!nd) continue; /* a leaf: its grad stays */
    if (!nd->backward) {
      rc = jbx_fail("backward: the graph through '%s' was already freed by an earlier backward; "
                    "run the forward again", nd->op);
      break;
    }
    if (t->grad) rc = nd->backward(nd, t, t->grad);
    spend_node(nd);
    jbx_zero_grad(t); /* inner gradients are transient */
  }
  for (size_t i = 0; i < order.n; i++) jbx_release(order.items[i]);
  free(order.items);
  jbx_set_grad_enabled(prev);
  return rc;
}
