/* Flat parameter and gradient arenas: a model's parameters become views of one storage
 * and their gradients views of another, so zeroing the gradients is one memset, an
 * optimiser step one loop and a data-parallel all-reduce one call. Each parameter keeps
 * its tensor header (Lua modules and checkpoints still see named tensors of their own
 * shapes); only where its values live changes. Slots start on 16-float (64-byte)
 * boundaries, as fresh storage does, so sgemm keeps its aligned fast path; the gaps
 * stay zero in both arenas. A parameter moved into a second arena leaves the first
 * (whose updates then reach nothing): one arena, one optimiser, per model. */
#ifndef JBX_PARAM_ARENA_H
#define JBX_PARAM_ARENA_H
#include "jbx_tensor.h"

typedef struct jbx_param_arena {
  int n;               /* distinct parameters */
  jbx_tensor **params; /* retained */
  int64_t *offsets;    /* of each parameter's slot, in elements */
  int64_t total;       /* elements in each arena, gaps included */
  jbx_tensor *weights; /* [total] over the parameters' values; weights->grad = grads */
  jbx_tensor *grads;   /* [total]; each parameter's grad is a view of its slot */
} jbx_param_arena;

/* Moves n float32 leaf parameters (repeats count once) into a new arena with zero
 * gradients. NULL on error (each parameter still valid, with its values). */
jbx_param_arena *jbx_param_arena_new(jbx_tensor *const *params, int n);
void jbx_param_arena_free(jbx_param_arena *a); /* NULL-safe; the parameters stay valid */

/* Index of p among the arena's parameters, or -1. */
int jbx_param_arena_find(const jbx_param_arena *a, const jbx_tensor *p);
/* A view of `flat` ([total], e.g. an Adam moment) shaped as parameter i's slot. */
jbx_tensor *jbx_param_arena_slot(const jbx_param_arena *a, jbx_tensor *flat, int i);
/* Makes every parameter's grad its slot again: a grad someone replaced (t.grad = x) is
 * copied in, a removed one (t.grad = nil) becomes zeros. Backward then accumulates in
 * place, and the arena holds every gradient. Returns 0 or -1. */
int jbx_param_arena_collect_grads(jbx_param_arena *a);
/* Zeroes the gradient arena (one memset) with every grad attached to its slot. */
int jbx_param_arena_zero_grads(jbx_param_arena *a);
#endif
