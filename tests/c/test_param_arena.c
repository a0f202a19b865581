/* Flat parameter arenas: parameters moved in keep their values and headers, slots are
 * aligned, gradients accumulate in place, replaced gradients are taken back, repeats
 * share a slot, and bad parameters are refused with the arena untouched. */
#include <stdint.h>

#include "check.h"
#include "jbx_error.h"
#include "jbx_param_arena.h"

static jbx_tensor *ramp(int ndim, const int64_t *shape, float start) {
  jbx_tensor *t = jbx_empty(JBX_F32, ndim, shape);
  float *v = jbx_f32(t);
  for (int64_t i = 0; i < jbx_numel(t); i++) v[i] = start + (float)i;
  t->requires_grad = true;
  return t;
}

int main(void) {
  int64_t s1[2] = {3, 5}, s2[1] = {4};
  jbx_tensor *a = ramp(2, s1, 1), *b = ramp(1, s2, 100);
  /* A view of a made before the move keeps the old values (documented). */
  jbx_tensor *old_view = jbx_detach(a);
  jbx_tensor *params[3] = {a, b, a};
  jbx_param_arena *ar = jbx_param_arena_new(params, 3);
  CHECK(ar != NULL, "%s", jbx_last_error());
  CHECK(ar->n == 2, "a repeated parameter takes one slot: %d", ar->n);
  CHECK(ar->total == 32, "15 -> 16 and 4 -> 16 floats: %lld", (long long)ar->total);
  CHECK(ar->offsets[1] == 16, "b's slot starts on a 64-byte boundary");
  CHECK(a->storage == ar->weights->storage && b->storage == ar->weights->storage, "one storage");
  CHECK(jbx_get(a, 14) == 15 && jbx_get(b, 3) == 103, "values kept");
  CHECK(jbx_f32(ar->weights)[16] == 100, "b at its offset");
  CHECK(jbx_f32(ar->weights)[15] == 0, "the gap is zero");
  CHECK(a->shape[0] == 3 && a->shape[1] == 5 && jbx_is_contiguous(a), "a keeps its shape");
  jbx_f32(ar->weights)[0] = -7;
  CHECK(jbx_get(a, 0) == -7, "a reads the arena");
  CHECK(jbx_get(old_view, 0) == 1, "an earlier view keeps the old storage");
  CHECK(jbx_param_arena_find(ar, b) == 1 && jbx_param_arena_find(ar, old_view) == -1, "find");

  /* Gradients: views of the gradient arena; accumulation adds in place. */
  CHECK(a->grad && a->grad->storage == ar->grads->storage, "a's grad is a slot");
  jbx_tensor *g = jbx_full(2, s1, 2.0f);
  CHECK(jbx_accum_grad(a, g) == 0 && jbx_accum_grad(a, g) == 0, "%s", jbx_last_error());
  CHECK(jbx_f32(ar->grads)[14] == 4 && jbx_f32(ar->grads)[15] == 0, "backward filled the arena in place");
  /* A replaced and a removed gradient are taken back by collect. */
  jbx_tensor *mine = jbx_full(1, s2, 3.0f);
  jbx_release(b->grad);
  b->grad = jbx_retain(mine);
  CHECK(jbx_param_arena_collect_grads(ar) == 0, "%s", jbx_last_error());
  CHECK(jbx_f32(ar->grads)[19] == 3 && b->grad != mine && b->grad->storage == ar->grads->storage,
        "a replaced grad is copied into its slot and the slot attached again");
  jbx_release(a->grad);
  a->grad = NULL;
  CHECK(jbx_param_arena_collect_grads(ar) == 0 && jbx_f32(ar->grads)[0] == 0 && a->grad, "a removed grad is zeros");
  CHECK(jbx_param_arena_zero_grads(ar) == 0 && jbx_f32(ar->grads)[16] == 0, "zero_grads");

  /* A slot of a flat tensor; a wrong one is refused. */
  jbx_tensor *slot = jbx_param_arena_slot(ar, ar->weights, 1);
  CHECK(slot && slot->ndim == 1 && jbx_get(slot, 0) == 100, "slot 1 is b");
  jbx_release(slot);
  CHECK(jbx_param_arena_slot(ar, b, 0) == NULL, "a flat tensor of another size");
  CHECK_ERROR_HAS("param_arena: a flat tensor must be contiguous float32 [32], got [4]");
  CHECK(jbx_param_arena_slot(ar, ar->weights, 2) == NULL, "no parameter 2");
  CHECK_ERROR_HAS("param_arena: no parameter 2 (it holds 2)");

  /* Bad parameters: an int32 tensor, a tensor made by an op. */
  jbx_tensor *codes = jbx_empty(JBX_I32, 1, s2), *bad[2] = {b, codes};
  CHECK(jbx_param_arena_new(bad, 2) == NULL, "an int32 parameter");
  CHECK_ERROR_HAS("param_arena: parameter 1 (int32 [4]) must be a float32 leaf tensor");
  CHECK(b->storage == ar->weights->storage, "the refused arena left b where it was");
  jbx_tensor *none[1] = {NULL};
  CHECK(jbx_param_arena_new(none, 1) == NULL, "NULL parameter");
  CHECK_ERROR_HAS("param_arena: parameter 0 is NULL");

  /* The arena outlives nothing: freeing it leaves the parameters valid. */
  jbx_param_arena_free(ar);
  CHECK(jbx_get(b, 3) == 103, "b still reads its values");
  jbx_release(codes);
  jbx_release(mine);
  jbx_release(g);
  jbx_release(old_view);
  jbx_release(a);
  jbx_release(b);
  return check_summary();
}
