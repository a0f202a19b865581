/* Gradient checks by central differences for every differentiable op: runs each row of
 * op_table.h over its sweep (broadcast shapes, strided and non-contiguous layouts, every
 * reduced dim) and checks backward against the numeric derivative. Prints the number of
 * checks run, so a shrinking table shows. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "gradcheck.h"
#include "jbx_rng.h"
#include "op_table.h"

static int checks_run;

/* ---------------------------------------------------------------- inputs */

/* A leaf drawn as spec says (seeded), or NULL for an absent input. */
static jbx_tensor *make_input(const in_spec *s, uint64_t seed) {
  if (s->ndim < 0) return NULL;
  jbx_tensor *t = gradcheck_input(s->ndim, s->shape, s->scale ? s->scale : 1.0f, seed);
  float *p = jbx_f32(t);
  int64_t n = jbx_numel(t);
  switch (s->gen) {
  case GEN_NORMAL: break;
  case GEN_POSITIVE:
    for (int64_t i = 0; i < n; i++) p[i] = fabsf(p[i]) + 0.5f;
    break;
  case GEN_GRID: /* lattices with different offsets never come within 0.15 of each other */
    for (int64_t i = 0; i < n; i++) p[i] = roundf(p[i] / 0.3f) * 0.3f + s->grid;
    break;
  case GEN_AWAY:
    for (int64_t i = 0; i < n; i++) p[i] += p[i] < 0 ? -0.5f : 0.5f;
    break;
  case GEN_DISTINCT: {
    jbx_rng rng;
    jbx_rng_seed(&rng, seed);
    for (int64_t i = 0; i < n; i++) p[i] = 0.05f * (float)(i - n / 2);
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)jbx_rng_below(&rng, (uint64_t)i + 1);
      float tmp = p[i];
      p[i] = p[j];
      p[j] = tmp;
    }
    break;
  }
  }
  if (s->constant) t->requires_grad = false;
  return t;
}

static jbx_tensor *make_aux(const aux_spec *a) {
  if (a->ints) return jbx_from_ints(a->ndim, a->shape, a->ints);
  if (a->floats) return jbx_from_floats(a->ndim, a->shape, a->floats);
  return NULL;
}

static jbx_tensor *view_of(jbx_tensor *t, view_kind v) {
  switch (v) {
  case VIEW_T01: return jbx_transpose(t, 0, 1);
  case VIEW_T02: return jbx_transpose(t, 0, 2);
  case VIEW_TLAST: return jbx_transpose(t, -1, -2);
  case VIEW_NARROW: return jbx_narrow(t, 0, 1, t->shape[0] - 1);
  case VIEW_NONE: break;
  }
  return jbx_retain(t);
}

/* ---------------------------------------------------------------- one check */

typedef struct {
  const op_row *row;
  in_spec in[OT_MAX_IN];
  op_args args;
} variant;

static jbx_tensor *run_variant(jbx_tensor **in, void *ctx) {
  const variant *v = ctx;
  jbx_tensor *viewed[OT_MAX_IN] = {NULL};
  for (int k = 0; k < v->row->arity; k++) viewed[k] = in[k] ? view_of(in[k], v->in[k].view) : NULL;
  jbx_tensor *out = v->row->fn(viewed, &v->args);
  for (int k = 0; k < v->row->arity; k++) jbx_release(viewed[k]);
  return out;
}

/* Checks variant v named "<row> <what>"; returns its inputs (for the caller to inspect)
 * in `keep` when given, else releases them. */
static void check_variant(variant *v, const char *what, uint64_t seed, jbx_tensor **keep) {
  const op_row *r = v->row;
  jbx_tensor *in[OT_MAX_IN] = {NULL};
  for (int k = 0; k < r->arity; k++) in[k] = make_input(&v->in[k], seed + 10 * (uint64_t)k);
  v->args.aux = make_aux(&r->aux);
  char name[160];
  snprintf(name, sizeof name, "%s%s%s", r->name, what[0] ? " " : "", what);
  double eps = r->eps ? r->eps : 1e-2, tol = r->tol ? r->tol : 2e-3;
  double err = gradcheck(name, run_variant, v, r->arity, in, eps, tol, r->richardson);
  CHECK(err <= tol, "%s: worst gradient error %.3g above %.3g", name, err, tol);
  checks_run++;
  jbx_release(v->args.aux);
  v->args.aux = NULL;
  for (int k = 0; k < r->arity; k++) {
    if (keep) keep[k] = in[k];
    else jbx_release(in[k]);
  }
}

static variant variant_of(const op_row *r) {
  variant v = {.row = r, .args = r->args};
  memcpy(v.in, r->in, sizeof v.in);
  return v;
}

/* ---------------------------------------------------------------- sweeps */

static void sweep_broadcast(const op_row *r) {
  /* a's shape, b's shape, how a is viewed */
  static const struct {
    int na;
    int64_t sa[3];
    int nb;
    int64_t sb[3];
    view_kind view;
    const char *what;
  } cases[] = {
      {2, {2, 3}, 2, {2, 3}, VIEW_NONE, "same shape"},
      {3, {2, 1, 3}, 2, {4, 1}, VIEW_NONE, "[2,1,3] with [4,1]"},
      {2, {2, 3}, 0, {0}, VIEW_NONE, "b 0-dim"},
      {1, {1}, 2, {3, 2}, VIEW_NONE, "a [1]"},
      {2, {3, 2}, 1, {3}, VIEW_T01, "a transposed, b broadcast"},
      {2, {3, 4}, 2, {2, 4}, VIEW_NARROW, "a narrowed"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
    for (int b_constant = 0; b_constant < 2; b_constant++) {
      variant v = variant_of(r);
      v.in[0].ndim = cases[c].na;
      memcpy(v.in[0].shape, cases[c].sa, sizeof cases[c].sa);
      v.in[0].view = cases[c].view;
      v.in[1].ndim = cases[c].nb;
      memcpy(v.in[1].shape, cases[c].sb, sizeof cases[c].sb);
      /* one side without requires_grad: the other still right, it gets nothing */
      v.in[1].constant = b_constant;
      char what[96];
      snprintf(what, sizeof what, "%s%s", cases[c].what, b_constant ? ", b constant" : "");
      jbx_tensor *in[OT_MAX_IN];
      check_variant(&v, what, 10 + c, in);
      CHECK(!b_constant || in[1]->grad == NULL, "%s %s: constant b got a gradient", r->name, what);
      jbx_release(in[0]);
      jbx_release(in[1]);
    }
}

static void sweep_layouts(const op_row *r, uint64_t seed) {
  static const char *what[] = {"contiguous", "transposed", "narrowed"};
  static const view_kind views[] = {VIEW_NONE, VIEW_T01, VIEW_NARROW};
  for (int lay = 0; lay < 3; lay++) {
    variant v = variant_of(r);
    v.in[0].ndim = 2;
    v.in[0].shape[0] = 3;
    v.in[0].shape[1] = 4;
    v.in[0].view = views[lay];
    check_variant(&v, what[lay], seed, NULL);
  }
}

/* Reductions over [3, 4, 5]: every dim (all dims too unless softmax-like), keepdim
 * both ways unless softmax-like, contiguous and transposed (dims 0, 2). */
static void sweep_dims(const op_row *r, bool reduce) {
  static const int dims[] = {0, 1, 2, -1, JBX_ALL_DIMS};
  for (int di = 0; di < (reduce ? 5 : 4); di++)
    for (int variant_no = 0; variant_no < 4; variant_no++) {
      bool keep = variant_no & 1, tr = variant_no & 2;
      if (keep && !reduce) continue;
      variant v = variant_of(r);
      v.in[0].ndim = 3;
      v.in[0].shape[0] = 3, v.in[0].shape[1] = 4, v.in[0].shape[2] = 5;
      v.in[0].view = tr ? VIEW_T02 : VIEW_NONE;
      v.args.dim = dims[di];
      v.args.keepdim = keep;
      char what[96];
      snprintf(what, sizeof what, "dim %d keepdim %d %s", dims[di], keep, tr ? "transposed" : "contiguous");
      check_variant(&v, what, 10 + di, NULL);
    }
}

static void sweep_transposed(const op_row *r, uint64_t seed) {
  for (int tr = 0; tr < 2; tr++) {
    variant v = variant_of(r);
    if (tr) v.in[0].view = VIEW_T02;
    check_variant(&v, tr ? "transposed" : "contiguous", seed, NULL);
  }
}

/* FNV-1a of the row's name: its inputs stay the same wherever the row stands. */
static uint64_t name_seed(const char *name) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; *name; name++) h = (h ^ (unsigned char)*name) * 0x100000001b3ULL;
  return h;
}

int main(void) {
  size_t rows = sizeof OP_TABLE / sizeof OP_TABLE[0];
  for (size_t i = 0; i < rows; i++) {
    const op_row *r = &OP_TABLE[i];
    uint64_t seed = r->seed ? r->seed : name_seed(r->name);
    switch (r->sweep) {
    case SWEEP_ONE: {
      variant v = variant_of(r);
      check_variant(&v, "", seed, NULL);
      break;
    }
    case SWEEP_BROADCAST: sweep_broadcast(r); break;
    case SWEEP_LAYOUTS: sweep_layouts(r, seed); break;
    case SWEEP_REDUCE: sweep_dims(r, true); break;
    case SWEEP_DIMS: sweep_dims(r, false); break;
    case SWEEP_TRANSPOSED: sweep_transposed(r, seed); break;
    }
  }
  printf("%d gradient checks over %zu ops\n", checks_run, rows);
  CHECK(checks_run >= 377, "the table ran %d gradient checks, fewer than the 377 it had", checks_run);
  return check_summary();
}
