/* Recompute in the backward (activation checkpointing, the reference's checkpoint_res /
 * c_res): out = fn(inputs) runs with the graph off, so none of fn's activations are kept;
 * the node remembers only its inputs. Its backward runs fn again with the graph on, over
 * fresh leaves that share the inputs' storage, back-propagates the output gradient
 * through that short-lived graph, and hands the leaves' gradients to the inputs.
 * Parameters that fn reads directly (not through its inputs) are leaves themselves, so
 * their gradients accumulate during the inner pass; they are passed as `watch` so the
 * node is recorded when only they want gradients. */
#include <stdlib.h>

#include "jbx_ops.h"
#include "op_kit.h"

typedef struct {
  jbx_recompute_fn fn;
  int n_in; /* the first n_in of the node's inputs are fn's; the rest are watched */
} recompute_params;

typedef struct {
  void *ctx;
  void (*free_ctx)(void *ctx);
} recompute_ctx;

static void free_recompute_ctx(void *p) {
  recompute_ctx *c = p;
  if (c->free_ctx) c->free_ctx(c->ctx);
  free(c);
}

static int recompute_backward(jbx_node *node, jbx_tensor *out, jbx_tensor *gout) {
  (void)out;
  const recompute_params *p = JBX_NODE_PARAMS(node, recompute_params);
  const recompute_ctx *c = node->ctx;
  jbx_tensor **leaves = calloc((size_t)p->n_in + 1, sizeof *leaves);
  if (!leaves) return jbx_fail("recompute: out of memory recomputing the forward");
  int rc = 0;
  for (int i = 0; i < p->n_in && rc == 0; i++) {
    jbx_tensor *in = node->in[i];
    if (!in) continue;
    leaves[i] = jbx_detach(in);
    if (!leaves[i]) rc = -1;
    else leaves[i]->requires_grad = in->requires_grad;
  }
  jbx_tensor *again = NULL;
  if (rc == 0) {
    bool prev = jbx_set_grad_enabled(true);
    again = p->fn(c->ctx, p->n_in, leaves);
    jbx_set_grad_enabled(prev);
    if (!again) rc = -1;
  }
  /* A recomputed output that needs no gradient (nothing inside wants one) passes none on. */
  if (rc == 0 && again->requires_grad) rc = jbx_backward(again, gout);
  for (int i = 0; i < p->n_in; i++) {
    if (rc == 0 && leaves[i] && leaves[i]->grad) rc = jbx_accum_grad(node->in[i], leaves[i]->grad);
    jbx_release(leaves[i]);
  }
  jbx_release(again);
  free(leaves);
  return rc;
}

jbx_tensor *jbx_recompute(jbx_recompute_fn fn, void *ctx, void (*free_ctx)(void *ctx), int n_in,
                           jbx_tensor *const *inputs, int n_watch, jbx_tensor *const *watch) {
  recompute_ctx *c = calloc(1, sizeof *c);
  int n = n_in + n_watch;
  jbx_tensor **all = calloc((size_t)n + 1, sizeof *all);
  if (!c || !all) {
    free(c);
    free(all);
    if (free_ctx) free_ctx(ctx);
    jbx_fail("recompute: out of memory");
    return NULL;
  }
  c->ctx = ctx;
  c->free_ctx = free_ctx;
  for (int i = 0; i < n_in; i++) all[i] = inputs[i];
  for (int i = 0; i < n_watch; i++) all[n_in + i] = watch[i];

  bool record = jbx_needs_grad(n, all);
  bool prev = jbx_set_grad_enabled(false);
  jbx_tensor *r = fn(ctx, n_in, inputs);
  jbx_set_grad_enabled(prev);
  jbx_tensor *out = NULL;
  if (r) {
    /* The output gets a header of its own: fn may return one of its inputs or a view. */
    out = jbx_detach(r);
    jbx_release(r);
  }
  recompute_params p = {fn, n_in};
  jbx_node *node = out && record ? JBX_RECORD(out, "recompute", recompute_backward, n, all, p) : NULL;
  if (node) {
    node->ctx = c;
    node->free_ctx = free_recompute_ctx;
    /* The inputs kept for the backward are the checkpoints: when the backward is done
     * with them their memory goes back to the system, not to the buffer cache, where it
     * would sit through the rest of the backward beside the gradients that grow. */
    for (int i = 0; i < n_in; i++)
      if (inputs[i] && inputs[i]->node && inputs[i]->storage) inputs[i]->storage->uncached = true;
  } else {
    free_recompute_ctx(c);
    if (out && record) { /* recording failed: out of memory */
      jbx_release(out);
      out = NULL;
    }
  }
  free(all);
  return out;
}
