/* Lua wrappers of the ops of jbx_ops.h and of the views of jbx_tensor.h, registered both
 * as functions of jukebox.core and as tensor methods (see ljt_op_regs at the end).
 * Dims are 1-based in Lua (negative from the end) and converted here; see l_tensor.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lj_tensor.h"

/* ------------------------------------------------------------------ elementwise */

typedef jbx_tensor *(*binary_fn)(jbx_tensor *, jbx_tensor *);
typedef jbx_tensor *(*unary_fn)(jbx_tensor *);

/* Arithmetic with a number on either side: the scalar ops where they exist, otherwise the
 * number becomes a 0-dim tensor that broadcasts. */
int ljt_arith(lua_State *L, int op, const char *fn) {
  bool an = lua_type(L, 1) == LUA_TNUMBER, bn = lua_type(L, 2) == LUA_TNUMBER;
  if (!an && bn) {
    jbx_tensor *a = ljt_check(L, 1, fn);
    float s = (float)lua_tonumber(L, 2);
    if (a->dtype == JBX_F32 || !lua_isinteger(L, 2)) {
      if (op == '+') return lj_push_tensor(L, jbx_add_scalar(a, s));
      if (op == '-') return lj_push_tensor(L, jbx_add_scalar(a, -s));
      if (op == '*') return lj_push_tensor(L, jbx_mul_scalar(a, s));
      if (op == '^') return lj_push_tensor(L, jbx_pow_scalar(a, s));
    }
  } else if (an && !bn) {
    jbx_tensor *b = ljt_check(L, 2, fn);
    float s = (float)lua_tonumber(L, 1);
    if (b->dtype == JBX_F32 || !lua_isinteger(L, 1)) {
      if (op == '+') return lj_push_tensor(L, jbx_add_scalar(b, s));
      if (op == '*') return lj_push_tensor(L, jbx_mul_scalar(b, s));
    }
  }
  /* Type-check both before converting either, so messages name the right argument. */
  jbx_tensor *like = NULL;
  if (!an) like = ljt_check_tn(L, 1, fn, NULL);
  if (!bn) like = ljt_check_tn(L, 2, fn, like);
  jbx_tensor *a = ljt_check_tn(L, 1, fn, like), *b = ljt_check_tn(L, 2, fn, like);
  switch (op) {
    case '+': return lj_push_tensor(L, jbx_add(a, b));
    case '-': return lj_push_tensor(L, jbx_sub(a, b));
    case '*': return lj_push_tensor(L, jbx_mul(a, b));
    case '/': return lj_push_tensor(L, jbx_div(a, b));
    default: return lj_push_tensor(L, jbx_pow(a, b));
  }
}

static int l_add(lua_State *L) { return ljt_arith(L, '+', "add"); }
static int l_sub(lua_State *L) { return ljt_arith(L, '-', "sub"); }
static int l_mul(lua_State *L) { return ljt_arith(L, '*', "mul"); }
static int l_div(lua_State *L) { return ljt_arith(L, '/', "div"); }
static int l_pow(lua_State *L) { return ljt_arith(L, '^', "pow"); }

static int binary(lua_State *L, binary_fn f, const char *fn) {
  jbx_tensor *like = NULL;
  if (lua_type(L, 1) != LUA_TNUMBER) like = ljt_check_tn(L, 1, fn, NULL);
  if (lua_type(L, 2) != LUA_TNUMBER) like = ljt_check_tn(L, 2, fn, like);
  jbx_tensor *a = ljt_check_tn(L, 1, fn, like), *b = ljt_check_tn(L, 2, fn, like);
  return lj_push_tensor(L, f(a, b));
}

#define BINARY(name)                                                            \
  static int l_##name(lua_State *L) { return binary(L, jbx_##name, #name); }
BINARY(maximum)
BINARY(minimum)
BINARY(gt)
BINARY(lt)
BINARY(eq)
BINARY(straight_through)

#define UNARY(name)                                                             \
  static int l_##name(lua_State *L) { return lj_push_tensor(L, jbx_##name(ljt_check(L, 1, #name))); }
UNARY(neg)
UNARY(exp)
UNARY(log)
UNARY(sqrt)
UNARY(abs)
UNARY(relu)
UNARY(gelu)
UNARY(tanh)
UNARY(sigmoid)

/* clamp(t, lo, hi): nil for an open side. */
static int l_clamp(lua_State *L) {
  jbx_tensor *t = ljt_check(L, 1, "clamp");
  double lo = lua_isnoneornil(L, 2) ? -INFINITY : ljt_num(L, 2, "clamp", "min");
  double hi = lua_isnoneornil(L, 3) ? INFINITY : ljt_num(L, 3, "clamp", "max");
  return lj_push_tensor(L, jbx_clamp(t, (float)lo, (float)hi));
}

/* where(mask, a, b): a and b tensors or numbers. */
static int l_where(lua_State *L) {
  jbx_tensor *m = ljt_check(L, 1, "where");
  jbx_tensor *like = NULL;
  if (lua_type(L, 2) != LUA_TNUMBER) like = ljt_check_tn(L, 2, "where", NULL);
  if (lua_type(L, 3) != LUA_TNUMBER) like = ljt_check_tn(L, 3, "where", like);
  jbx_tensor *a = ljt_check_tn(L, 2, "where", like), *b = ljt_check_tn(L, 3, "where", like);
  return lj_push_tensor(L, jbx_where(m, a, b));
}

/* t:where(mask, other) = where(mask, t, other), as in PyTorch. */
static int m_where(lua_State *L) {
  lua_settop(L, 3);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_replace(L, 1);
  lua_replace(L, 2);
  return l_where(L);
}

static int l_masked_fill(lua_State *L) {
  jbx_tensor *a = ljt_check(L, 1, "masked_fill"), *m = ljt_check(L, 2, "masked_fill");
  double v = ljt_num(L, 3, "masked_fill", "value");
  return lj_push_tensor(L, jbx_masked_fill(a, m, (float)v));
}

/* ------------------------------------------------------------------ reductions */

typedef jbx_tensor *(*reduce_fn)(jbx_tensor *, int, bool);

/* t:op([dim [, keepdim]]): no dim reduces over every element. */
static int reduce(lua_State *L, reduce_fn f, const char *fn) {
  jbx_tensor *t = ljt_check(L, 1, fn);
  int dim = lua_isnoneornil(L, 2) ? JBX_ALL_DIMS : ljt_dim(L, 2, t, fn);
  bool keep = ljt_opt_bool(L, 3, fn, "keepdim", false);
  return lj_push_tensor(L, f(t, dim, keep));
}

#define REDUCE(name)                                                            \
  static int l_##name(lua_State *L) { return reduce(L, jbx_##name, #name); }
REDUCE(sum)
REDUCE(mean)
REDUCE(argmax)
REDUCE(argmin)
REDUCE(norm)
REDUCE(logsumexp)

typedef jbx_tensor *(*minmax_fn)(jbx_tensor *, int, bool, jbx_tensor **);

/* t:max() -> value; t:max(dim [, keepdim]) -> values, indices (0-based int32). */
static int minmax(lua_State *L, minmax_fn f, const char *fn) {
  jbx_tensor *t = ljt_check(L, 1, fn);
  if (lua_isnoneornil(L, 2)) return lj_push_tensor(L, f(t, JBX_ALL_DIMS, false, NULL));
  int dim = ljt_dim(L, 2, t, fn);
  bool keep = ljt_opt_bool(L, 3, fn, "keepdim", false);
  jbx_tensor *idx = NULL, *v = f(t, dim, keep, &idx);
  if (!v) {
    jbx_release(idx);
    return lj_raise(L);
  }
  if (!idx) {
    jbx_release(v);
    return ljt_error(L, "%s: no indices returned", fn);
  }
  lj_push_tensor(L, v);
  lj_push_tensor(L, idx);
  return 2;
}
static int l_max(lua_State *L) { return minmax(L, jbx_max, "max"); }
static int l_min(lua_State *L) { return minmax(L, jbx_min, "min"); }

typedef jbx_tensor *(*softmax_fn)(jbx_tensor *, int);
static int softmax_like(lua_State *L, softmax_fn f, const char *fn) {
  jbx_tensor *t = ljt_check(L, 1, fn);
  if (lua_isnoneornil(L, 2)) ljt_error(L, "%s: argument 2 (dim) is required", fn);
  return lj_push_tensor(L, f(t, ljt_dim(L, 2, t, fn)));
}
static int l_softmax(lua_State *L) { return softmax_like(L, jbx_softmax, "softmax"); }
static int l_log_softmax(lua_State *L) { return softmax_like(L, jbx_log_softmax, "log_softmax"); }

static int l_topk_mean(lua_State *L) {
  jbx_tensor *t = ljt_check(L, 1, "topk_mean");
  return lj_push_tensor(L, jbx_topk_mean(t, (int64_t)ljt_int(L, 2, "topk_mean", "k")));
}

/* ------------------------------------------------------------------ linear algebra, shape ops */

static int l_matmul(lua_State *L) {
  jbx_tensor *a = ljt_check(L, 1, "matmul"), *b = ljt_check(L, 2, "matmul");
  return lj_push_tensor(L, jbx_matmul(a, b));
}

/* concat({a, b, ...}, dim = 1) */
static int l_concat(lua_State *L) {
  const char *fn = "concat";
  lua_settop(L, 2); /* the list's array is pushed above the arguments */
  if (lua_type(L, 1) != LUA_TTABLE || ljt_is_tensor(L, 1))
    ljt_error(L, "concat: argument 1 must be a list of tensors, got %s",
              lua_isnone(L, 1) ? "no value" : ljt_typename(L, 1));
  int n = (int)lua_rawlen(L, 1);
  if (n == 0) ljt_error(L, "concat: expected a non-empty list of tensors");
  jbx_tensor **ts = lua_newuserdatauv(L, (size_t)n * sizeof *ts, 0); /* freed by the GC */
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    if (!ljt_is_tensor(L, -1))
      ljt_error(L, "concat: element %d of the list must be a tensor, got %s", i + 1, ljt_typename(L, -1));
    ts[i] = ljt_check(L, -1, fn);
    lua_pop(L, 1); /* still referenced by the list */
  }
  int dim = lua_isnoneornil(L, 2) ? 0 : ljt_dim(L, 2, ts[0], fn);
  return lj_push_tensor(L, jbx_concat(n, ts, dim));
}

static int l_index_select(lua_State *L) {
  jbx_tensor *a = ljt_check(L, 1, "index_select");
  int dim = ljt_dim(L, 2, a, "index_select");
  return lj_push_tensor(L, jbx_index_select(a, dim, ljt_check(L, 3, "index_select")));
}

static int l_gather(lua_State *L) {
  jbx_tensor *a = ljt_check(L, 1, "gather");
  int dim = ljt_dim(L, 2, a, "gather");
  return lj_push_tensor(L, jbx_gather(a, dim, ljt_check(L, 3, "gather")));
}

static int l_embedding(lua_State *L) {
  jbx_tensor *w = ljt_check(L, 1, "embedding"), *ids = ljt_check(L, 2, "embedding");
  return lj_push_tensor(L, jbx_embedding(w, ids));
}

/* layer_norm(x, weight_or_nil, bias_or_nil, eps_or_{eps=}) */
static int l_layer_norm(lua_State *L) {
  static const char *const known[] = {"eps", NULL};
  jbx_tensor *x = ljt_check(L, 1, "layer_norm");
  jbx_tensor *w = ljt_opt(L, 2, "layer_norm"), *b = ljt_opt(L, 3, "layer_norm");
  double eps = 1e-5;
  if (lua_type(L, 4) == LUA_TNUMBER) {
    eps = lua_tonumber(L, 4);
  } else if (!lua_isnoneornil(L, 4)) {
    lj_check_options(L, 4, "layer_norm", known);
    eps = lj_opt_num_field(L, 4, "eps", 1e-5);
  }
  return lj_push_tensor(L, jbx_layer_norm(x, w, b, (float)eps));
}

/* ------------------------------------------------------------------ views */

static int l_view(lua_State *L) {
  const char *fn = ljt_fn_name(L);
  jbx_tensor *t = ljt_check(L, 1, fn);
  int64_t shape[JBX_MAX_DIMS];
  int nd = ljt_shape_args(L, 2, fn, shape, NULL, true);
  return lj_push_tensor(L, jbx_view(t, nd, shape));
}

static int l_flatten(lua_State *L) {
  int64_t n = -1;
  return lj_push_tensor(L, jbx_view(ljt_check(L, 1, "flatten"), 1, &n));
}

static int l_transpose(lua_State *L) {
  jbx_tensor *t = ljt_check(L, 1, "transpose");
  if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3) && t->ndim == 2) return lj_push_tensor(L, jbx_transpose(t, 0, 1));
  int a = ljt_dim(L, 2, t, "transpose"), b = ljt_dim(L, 3, t, "transpose");
  return lj_push_tensor(L, jbx_transpose(t, a, b));
}

/* permute(t, {dims}) or permute(t, d1, d2, ...) with 1-based dims. */
static int l_permute(lua_State *L) {
  const char *fn = "permute";
  jbx_tensor *t = ljt_check(L, 1, fn);
  lua_Integer order[JBX_MAX_DIMS];
  int n = 0;
  if (lua_type(L, 2) == LUA_TTABLE && !ljt_is_tensor(L, 2)) {
    int len = (int)lua_rawlen(L, 2);
    for (; n < len && n < JBX_MAX_DIMS; n++) {
      lua_rawgeti(L, 2, n + 1);
      if (!lua_isinteger(L, -1))
        ljt_error(L, "permute: element %d of the order must be an integer dim, got %s", n + 1, ljt_typename(L, -1));
      order[n] = lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
    if (len > n) n = len;
  } else {
    for (; n < JBX_MAX_DIMS && !lua_isnone(L, n + 2); n++) order[n] = ljt_int(L, n + 2, fn, "dim");
    if (!lua_isnone(L, n + 2)) n++;
  }
  char s[160];
  if (n != t->ndim)
    ljt_error(L, "permute: the order gives %d dims, the tensor %s has %d", n, jbx_shape_str(t, s, sizeof s), t->ndim);
  int perm[JBX_MAX_DIMS];
  bool seen[JBX_MAX_DIMS] = {false};
  for (int d = 0; d < n; d++) {
    perm[d] = ljt_dim_value(L, order[d], t, fn);
    if (seen[perm[d]]) ljt_error(L, "permute: dim %d appears twice in the order", perm[d] + 1);
    seen[perm[d]] = true;
  }
  return lj_push_tensor(L, jbx_permute(t, perm));
}

/* narrow(t, dim, start, length): start is 1-based (negative: from the end). */
static int l_narrow(lua_State *L) {
  const char *fn = "narrow";
  jbx_tensor *t = ljt_check(L, 1, fn);
  if (t->ndim == 0) ljt_error(L, "narrow: cannot narrow a 0-dim tensor");
  int d = ljt_dim(L, 2, t, fn);
  lua_Integer start = ljt_int(L, 3, fn, "start"), len = ljt_int(L, 4, fn, "length");
  int64_t size = t->shape[d];
  char s[160];
  if (start == 0 || start > size + 1 || start < -size)
    ljt_error(L, "narrow: start %lld is outside dim %d of size %lld in %s (start is 1-based: 1..%lld, or negative from the end)",
              (long long)start, d + 1, (long long)size, jbx_shape_str(t, s, sizeof s), (long long)size);
  int64_t s0 = start > 0 ? start - 1 : start + size;
  if (len < 0 || s0 + len > size)
    ljt_error(L, "narrow: start %lld with length %lld goes past the end of dim %d (size %lld) in %s", (long long)start,
              (long long)len, d + 1, (long long)size, jbx_shape_str(t, s, sizeof s));
  return lj_push_tensor(L, jbx_narrow(t, d, s0, len));
}

/* select(t, dim, i): the slice at 1-based position i, with dim removed. */
static int l_select(lua_State *L) {
  const char *fn = "select";
  jbx_tensor *t = ljt_check(L, 1, fn);
  if (t->ndim == 0) ljt_error(L, "select: cannot select from a 0-dim tensor");
  int d = ljt_dim(L, 2, t, fn);
  lua_Integer i = ljt_int(L, 3, fn, "index");
  int64_t size = t->shape[d];
  char s[160];
  if (i == 0 || i > size || i < -size)
    ljt_error(L, "select: index %lld is outside dim %d of size %lld in %s (1-based: 1..%lld, or negative from the end)",
              (long long)i, d + 1, (long long)size, jbx_shape_str(t, s, sizeof s), (long long)size);
  jbx_tensor *n = jbx_narrow(t, d, i > 0 ? i - 1 : i + size, 1);
  jbx_tensor *r = n ? jbx_squeeze(n, d) : NULL;
  jbx_release(n);
  return lj_push_tensor(L, r);
}

static int l_expand(lua_State *L) {
  const char *fn = "expand";
  jbx_tensor *t = ljt_check(L, 1, fn);
  int64_t shape[JBX_MAX_DIMS];
  int nd = ljt_shape_args(L, 2, fn, shape, NULL, true);
  char s[160];
  if (nd < t->ndim) ljt_error(L, "expand: cannot expand %s to %d dims", jbx_shape_str(t, s, sizeof s), nd);
  for (int d = 0, lead = nd - t->ndim; d < nd; d++) {
    int64_t have = d < lead ? 1 : t->shape[d - lead];
    if (d < lead && shape[d] == -1) ljt_error(L, "expand: -1 is not allowed in the new leading dim %d", d + 1);
    if (shape[d] != -1 && have != shape[d] && have != 1)
      ljt_error(L, "expand: dim %d of %s has size %lld, cannot expand to %lld", d - lead + 1,
                jbx_shape_str(t, s, sizeof s), (long long)have, (long long)shape[d]);
  }
  return lj_push_tensor(L, jbx_expand(t, nd, shape));
}

static int l_expand_as(lua_State *L) {
  jbx_tensor *t = ljt_check(L, 1, "expand_as"), *o = ljt_check(L, 2, "expand_as");
  lua_settop(L, 1);
  lua_createtable(L, o->ndim, 0);
  for (int d = 0; d < o->ndim; d++) {
    lua_pushinteger(L, o->shape[d]);
    lua_rawseti(L, -2, d + 1);
  }
  (void)t;
  return l_expand(L);
}

/* unsqueeze(t, dim): the new dim's position, 1..ndim+1 (or -1 for a new last dim). */
static int l_unsqueeze(lua_State *L) {
  const char *fn = "unsqueeze";
  jbx_tensor *t = ljt_check(L, 1, fn);
  lua_Integer d = ljt_int(L, 2, fn, "dim");
  int nd = t->ndim + 1;
  char s[160];
  if (!((d >= 1 && d <= nd) || (d < 0 && d >= -nd)))
    ljt_error(L, "unsqueeze: dim %lld out of range for a tensor of shape %s (1..%d, or -%d..-1 from the end)",
              (long long)d, jbx_shape_str(t, s, sizeof s), nd, nd);
  return lj_push_tensor(L, jbx_unsqueeze(t, d > 0 ? (int)d - 1 : (int)(d + nd)));
}

/* squeeze(t [, dim]): without dim removes every dim of size 1. */
static int l_squeeze(lua_State *L) {
  const char *fn = "squeeze";
  jbx_tensor *t = ljt_check(L, 1, fn);
  if (lua_isnoneornil(L, 2)) {
    int64_t shape[JBX_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < t->ndim; d++)
      if (t->shape[d] != 1) shape[n++] = t->shape[d];
    return lj_push_tensor(L, jbx_view(t, n, shape));
  }
  int d = ljt_dim(L, 2, t, fn);
  char s[160];
  if (t->ndim == 0 || t->shape[d] != 1)
    ljt_error(L, "squeeze: dim %d of %s has size %lld, not 1", d + 1, jbx_shape_str(t, s, sizeof s),
              (long long)(t->ndim ? t->shape[d] : 1));
  return lj_push_tensor(L, jbx_squeeze(t, d));
}

static int l_contiguous(lua_State *L) { return lj_push_tensor(L, jbx_contiguous(ljt_check(L, 1, "contiguous"))); }
static int l_clone(lua_State *L) { return lj_push_tensor(L, jbx_clone(ljt_check(L, 1, "clone"))); }
static int l_detach(lua_State *L) { return lj_push_tensor(L, jbx_detach(ljt_check(L, 1, "detach"))); }

/* ------------------------------------------------------------------ registration */

const ljt_reg ljt_op_regs[] = {
    {"add", l_add, LJT_BOTH},
    {"sub", l_sub, LJT_BOTH},
    {"mul", l_mul, LJT_BOTH},
    {"div", l_div, LJT_BOTH},
    {"pow", l_pow, LJT_BOTH},
    {"maximum", l_maximum, LJT_BOTH},
    {"minimum", l_minimum, LJT_BOTH},
    {"gt", l_gt, LJT_BOTH},
    {"lt", l_lt, LJT_BOTH},
    {"eq", l_eq, LJT_BOTH},
    {"straight_through", l_straight_through, LJT_BOTH},
    {"neg", l_neg, LJT_BOTH},
    {"exp", l_exp, LJT_BOTH},
    {"log", l_log, LJT_BOTH},
    {"sqrt", l_sqrt, LJT_BOTH},
    {"abs", l_abs, LJT_BOTH},
    {"relu", l_relu, LJT_BOTH},
    {"gelu", l_gelu, LJT_BOTH},
    {"tanh", l_tanh, LJT_BOTH},
    {"sigmoid", l_sigmoid, LJT_BOTH},
    {"clamp", l_clamp, LJT_BOTH},
    {"where", l_where, LJT_FUNC},
    {"where", m_where, LJT_METHOD},
    {"masked_fill", l_masked_fill, LJT_BOTH},
    {"sum", l_sum, LJT_BOTH},
    {"mean", l_mean, LJT_BOTH},
    {"max", l_max, LJT_BOTH},
    {"min", l_min, LJT_BOTH},
    {"argmax", l_argmax, LJT_BOTH},
    {"argmin", l_argmin, LJT_BOTH},
    {"norm", l_norm, LJT_BOTH},
    {"logsumexp", l_logsumexp, LJT_BOTH},
    {"softmax", l_softmax, LJT_BOTH},
    {"log_softmax", l_log_softmax, LJT_BOTH},
    {"topk_mean", l_topk_mean, LJT_BOTH},
    {"matmul", l_matmul, LJT_BOTH},
    {"concat", l_concat, LJT_FUNC},
    {"cat", l_concat, LJT_FUNC},
    {"index_select", l_index_select, LJT_BOTH},
    {"gather", l_gather, LJT_BOTH},
    {"embedding", l_embedding, LJT_BOTH},
    {"layer_norm", l_layer_norm, LJT_BOTH},
    {"view", l_view, LJT_BOTH},
    {"reshape", l_view, LJT_BOTH},
    {"flatten", l_flatten, LJT_BOTH},
    {"transpose", l_transpose, LJT_BOTH},
    {"permute", l_permute, LJT_BOTH},
    {"narrow", l_narrow, LJT_BOTH},
    {"select", l_select, LJT_BOTH},
    {"expand", l_expand, LJT_BOTH},
    {"expand_as", l_expand_as, LJT_BOTH},
    {"unsqueeze", l_unsqueeze, LJT_BOTH},
    {"squeeze", l_squeeze, LJT_BOTH},
    {"contiguous", l_contiguous, LJT_BOTH},
    {"clone", l_clone, LJT_BOTH},
    {"detach", l_detach, LJT_BOTH},
    {NULL, NULL, 0},
};
