/* The tensor ops of jukebox.core as one declarative table (ops[] at the end): each row
 * names an op, its calling shape (kind), where it goes (function, method or both), the
 * core function and its argument names for messages. One caller per kind reads the row
 * from the closure's upvalue 2, checks the arguments and calls the core; ops whose
 * arguments fit no kind are CUSTOM rows pointing at a small wrapper. View semantics and
 * their checks live in core/view.c: the binding only turns Lua numbering (1-based dims and
 * positions, negative from the end) into the core's.
 *
 * A new unary elementwise op, e.g. quick_gelu, is one row:
 *     UNARY("quick_gelu", jbx_quick_gelu),  */
#include <math.h>
#include <string.h>

#include "lj_tensor.h"

typedef enum {
  K_UNARY,     /* op(t) */
  K_BINARY,    /* op(a, b): tensors or numbers, broadcasting */
  K_ARITH,     /* like K_BINARY, with the core's scalar fast paths for a number operand */
  K_PAIR,      /* op(a, b): two tensors */
  K_REDUCE,    /* op(t [, dim [, keepdim]]): no dim reduces over every element */
  K_MINMAX,    /* op(t) -> value; op(t, dim [, keepdim]) -> values, indices */
  K_DIM,       /* op(t, dim): dim required */
  K_DIM_INDEX, /* op(t, dim, index tensor) */
  K_CUSTOM,    /* a wrapper of its own */
} op_kind;

typedef struct {
  const char *name;
  op_kind kind;
  int where; /* LJ_FUNC, LJ_METHOD or LJ_BOTH */
  union {
    jbx_tensor *(*unary)(jbx_tensor *);
    jbx_tensor *(*binary)(jbx_tensor *, jbx_tensor *);
    jbx_tensor *(*reduce)(jbx_tensor *, int, bool);
    jbx_tensor *(*minmax)(jbx_tensor *, int, bool, jbx_tensor **);
    jbx_tensor *(*dim)(jbx_tensor *, int);
    jbx_tensor *(*dim_index)(jbx_tensor *, int, jbx_tensor *);
    lua_CFunction custom;
  } f;
  const char *arg1, *arg2; /* names of the tensor arguments, for messages */
  char arith;              /* K_ARITH: '+', '-', '*', '/', '^' */
  const char *meta;        /* metamethod bound to the same caller, e.g. "__add" */
} op_row;

static const op_row *row_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(2)); }

/* ------------------------------------------------------------------ callers, one per kind */

static int call_unary(lua_State *L) {
  const op_row *op = row_of(L);
  return lj_push_tensor(L, op->f.unary(lj_tensor(L, 1, op->arg1)));
}

/* Checks both operands before converting either, so messages name the right argument;
 * a number takes an integer dtype from an int32 tensor on the other side. */
static void two_operands(lua_State *L, const op_row *op, int i, jbx_tensor **a, jbx_tensor **b) {
  jbx_tensor *like = NULL;
  if (lua_type(L, i) != LUA_TNUMBER) like = lj_tensor_or_number(L, i, op->arg1, NULL);
  if (lua_type(L, i + 1) != LUA_TNUMBER) like = lj_tensor_or_number(L, i + 1, op->arg2, like);
  *a = lj_tensor_or_number(L, i, op->arg1, like);
  *b = lj_tensor_or_number(L, i + 1, op->arg2, like);
}

static int call_binary(lua_State *L) {
  const op_row *op = row_of(L);
  jbx_tensor *a, *b;
  two_operands(L, op, 1, &a, &b);
  return lj_push_tensor(L, op->f.binary(a, b));
}

/* The core's scalar ops where they exist (no 0-dim tensor, no broadcast), else K_BINARY. */
static int scalar_fast_path(lua_State *L, const op_row *op) {
  bool an = lua_type(L, 1) == LUA_TNUMBER, bn = lua_type(L, 2) == LUA_TNUMBER;
  if (an == bn) return 0;
  int ti = an ? 2 : 1, si = an ? 1 : 2;
  jbx_tensor *t = lj_tensor_or_number(L, ti, ti == 1 ? op->arg1 : op->arg2, NULL);
  if (t->dtype != JBX_F32 && lua_isinteger(L, si)) return 0;
  float s = (float)lua_tonumber(L, si);
  switch (op->arith) {
    case '+': return lj_push_tensor(L, jbx_add_scalar(t, s));
    case '*': return lj_push_tensor(L, jbx_mul_scalar(t, s));
    case '-': return bn ? lj_push_tensor(L, jbx_add_scalar(t, -s)) : 0;
    case '^': return bn ? lj_push_tensor(L, jbx_pow_scalar(t, s)) : 0;
    default: return 0;
  }
}

static int call_arith(lua_State *L) {
  int n = scalar_fast_path(L, row_of(L));
  return n ? n : call_binary(L);
}

static int call_pair(lua_State *L) {
  const op_row *op = row_of(L);
  jbx_tensor *a = lj_tensor(L, 1, op->arg1), *b = lj_tensor(L, 2, op->arg2);
  return lj_push_tensor(L, op->f.binary(a, b));
}

static int call_reduce(lua_State *L) {
  const op_row *op = row_of(L);
  jbx_tensor *t = lj_tensor(L, 1, op->arg1);
  int dim = lua_isnoneornil(L, 2) ? JBX_ALL_DIMS : lj_dim(L, 2, t);
  return lj_push_tensor(L, op->f.reduce(t, dim, lj_opt_bool(L, 3, "keepdim", false)));
}

/* t:max() -> value; t:max(dim [, keepdim]) -> values, indices (0-based int32). */
static int call_minmax(lua_State *L) {
  const op_row *op = row_of(L);
  jbx_tensor *t = lj_tensor(L, 1, op->arg1);
  if (lua_isnoneornil(L, 2)) return lj_push_tensor(L, op->f.minmax(t, JBX_ALL_DIMS, false, NULL));
  int dim = lj_dim(L, 2, t);
  bool keep = lj_opt_bool(L, 3, "keepdim", false);
  jbx_tensor *idx = NULL, *v = op->f.minmax(t, dim, keep, &idx);
  if (!v) {
    jbx_release(idx);
    return lj_raise(L);
  }
  lj_push_tensor(L, v);
  lj_push_tensor(L, idx);
  return 2;
}

static int call_dim(lua_State *L) {
  const op_row *op = row_of(L);
  jbx_tensor *t = lj_tensor(L, 1, op->arg1);
  return lj_push_tensor(L, op->f.dim(t, lj_dim(L, 2, t)));
}

static int call_dim_index(lua_State *L) {
  const op_row *op = row_of(L);
  jbx_tensor *t = lj_tensor(L, 1, op->arg1);
  int dim = lj_dim(L, 2, t);
  return lj_push_tensor(L, op->f.dim_index(t, dim, lj_tensor(L, 3, op->arg2)));
}

static const lua_CFunction callers[] = {
    [K_UNARY] = call_unary,   [K_BINARY] = call_binary, [K_ARITH] = call_arith,
    [K_PAIR] = call_pair,     [K_REDUCE] = call_reduce, [K_MINMAX] = call_minmax,
    [K_DIM] = call_dim,       [K_DIM_INDEX] = call_dim_index,
};

/* ------------------------------------------------------------------ custom wrappers */

/* clamp(t, lo, hi): nil for an open side. */
static int l_clamp(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  double lo = lj_opt_num(L, 2, "min", -INFINITY), hi = lj_opt_num(L, 3, "max", INFINITY);
  return lj_push_tensor(L, jbx_clamp(t, (float)lo, (float)hi));
}

/* where(mask, a, b): a and b tensors or numbers. */
static const op_row where_operands = {.arg1 = "input", .arg2 = "other"};
static int l_where(lua_State *L) {
  jbx_tensor *m = lj_tensor(L, 1, "condition"), *a, *b;
  two_operands(L, &where_operands, 2, &a, &b);
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
  jbx_tensor *a = lj_tensor(L, 1, "input"), *m = lj_tensor(L, 2, "mask");
  return lj_push_tensor(L, jbx_masked_fill(a, m, (float)lj_num(L, 3, "value")));
}

static int l_topk_mean(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  return lj_push_tensor(L, jbx_topk_mean(t, (int64_t)lj_int(L, 2, "k")));
}

/* linear(x, w [, b]): the reference's Conv1D, w [n_in, n_out]. */
static int l_linear(lua_State *L) {
  jbx_tensor *x = lj_tensor(L, 1, "input"), *w = lj_tensor(L, 2, "weight");
  return lj_push_tensor(L, jbx_linear(x, w, lj_opt_tensor(L, 3, "bias")));
}

/* linear_cross_entropy(x, w, targets): the mean cross-entropy (nats) of x w^T, fused. */
static int l_linear_cross_entropy(lua_State *L) {
  jbx_tensor *x = lj_tensor(L, 1, "input"), *w = lj_tensor(L, 2, "weight"), *t = lj_tensor(L, 3, "targets");
  return lj_push_tensor(L, jbx_linear_cross_entropy(x, w, t));
}

/* cross_entropy(logits, targets [, {reduction = "mean" | "none"}]): nats. */
static int l_cross_entropy(lua_State *L) {
  static const char *const known[] = {"reduction", NULL};
  jbx_tensor *x = lj_tensor(L, 1, "logits"), *t = lj_tensor(L, 2, "targets");
  lj_check_options(L, 3, known);
  jbx_reduction red = JBX_REDUCE_MEAN;
  if (lj_opt_has(L, 3, "reduction")) {
    lua_getfield(L, 3, "reduction");
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (s && strcmp(s, "none") == 0) red = JBX_REDUCE_NONE;
    else if (!s || strcmp(s, "mean") != 0) {
      if (s) lj_error(L, "%s: option 'reduction' must be \"mean\" or \"none\", got \"%s\"", lj_fn_name(L), s);
      lj_error(L, "%s: option 'reduction' must be \"mean\" or \"none\", got %s", lj_fn_name(L), lj_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  return lj_push_tensor(L, jbx_cross_entropy(x, t, red));
}

/* concat({a, b, ...}, dim = 1) */
static int l_concat(lua_State *L) {
  lua_settop(L, 2); /* the list's array is pushed above the arguments */
  if (lua_type(L, 1) != LUA_TTABLE) lj_arg_error(L, 1, "tensors", "a list of tensors");
  int n = (int)lua_rawlen(L, 1);
  if (n == 0) lj_error(L, "%s: argument 1 (tensors) must be a non-empty list of tensors, got an empty one", lj_fn_name(L));
  jbx_tensor **ts = lua_newuserdatauv(L, (size_t)n * sizeof *ts, 0); /* freed by the GC */
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    if (!lj_is_tensor(L, -1))
      lj_error(L, "%s: argument 1 (tensors) must be a list of tensors, got %s at [%d]", lj_fn_name(L),
               lj_typename(L, -1), i + 1);
    ts[i] = lj_tensor(L, -1, "tensors");
    lua_pop(L, 1); /* still referenced by the list */
  }
  int dim = lua_isnoneornil(L, 2) ? 0 : lj_dim(L, 2, ts[0]);
  return lj_push_tensor(L, jbx_concat(n, ts, dim));
}

/* layer_norm(x, weight_or_nil, bias_or_nil, eps_or_{eps=}) */
static int l_layer_norm(lua_State *L) {
  static const char *const known[] = {"eps", NULL};
  jbx_tensor *x = lj_tensor(L, 1, "input");
  jbx_tensor *w = lj_opt_tensor(L, 2, "weight"), *b = lj_opt_tensor(L, 3, "bias");
  double eps = 1e-5;
  if (lua_type(L, 4) == LUA_TNUMBER) {
    eps = lua_tonumber(L, 4);
  } else {
    lj_check_options(L, 4, known);
    eps = lj_opt_num_field(L, 4, "eps", eps);
  }
  return lj_push_tensor(L, jbx_layer_norm(x, w, b, (float)eps));
}

/* view(t, shape) / reshape: one -1 infers a size. */
static int l_view(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  int64_t shape[JBX_MAX_DIMS];
  int nd = lj_shape_args(L, 2, shape, NULL, true);
  return lj_push_tensor(L, jbx_view(t, nd, shape));
}

static int l_flatten(lua_State *L) {
  int64_t n = -1;
  return lj_push_tensor(L, jbx_view(lj_tensor(L, 1, "input"), 1, &n));
}

/* transpose(t, a, b); a 2-dim tensor may omit the dims. */
static int l_transpose(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3) && t->ndim == 2) return lj_push_tensor(L, jbx_transpose(t, 0, 1));
  int a = lj_dim(L, 2, t), b = lj_dim(L, 3, t);
  return lj_push_tensor(L, jbx_transpose(t, a, b));
}

/* permute(t, {dims}) or permute(t, d1, d2, ...) with 1-based dims. */
static int l_permute(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  bool listed = lua_type(L, 2) == LUA_TTABLE;
  int n = listed ? (int)lua_rawlen(L, 2) : lua_gettop(L) - 1;
  char s[160];
  if (n != t->ndim)
    lj_error(L, "permute: the order gives %d dims, the tensor %s has %d", n, jbx_shape_str(t, s, sizeof s), t->ndim);
  int perm[JBX_MAX_DIMS];
  for (int d = 0; d < n; d++) {
    lua_Integer v;
    if (listed) {
      lua_rawgeti(L, 2, d + 1);
      if (!lua_isinteger(L, -1))
        lj_error(L, "permute: element %d of the order must be an integer dim, got %s", d + 1, lj_typename(L, -1));
      v = lua_tointeger(L, -1);
      lua_pop(L, 1);
    } else {
      v = lj_int(L, d + 2, "dim");
    }
    perm[d] = lj_dim_value(L, v, t);
  }
  return lj_push_tensor(L, jbx_permute(t, perm));
}

/* narrow(t, dim, start, length): start is 1-based (negative: from the end). */
static int l_narrow(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  if (t->ndim == 0) return lj_push_tensor(L, jbx_narrow(t, 0, 0, 0)); /* the core words it */
  int d = lj_dim(L, 2, t);
  int64_t start = lj_position(L, 3, "start", t->shape[d], true);
  return lj_push_tensor(L, jbx_narrow(t, d, start, lj_int(L, 4, "length")));
}

/* select(t, dim, i): the slice at 1-based position i, with dim removed. */
static int l_select(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  if (t->ndim == 0) return lj_push_tensor(L, jbx_select(t, 0, 0)); /* the core words it */
  int d = lj_dim(L, 2, t);
  return lj_push_tensor(L, jbx_select(t, d, lj_position(L, 3, "index", t->shape[d], false)));
}

static int l_expand(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  int64_t shape[JBX_MAX_DIMS];
  int nd = lj_shape_args(L, 2, shape, NULL, true);
  return lj_push_tensor(L, jbx_expand(t, nd, shape));
}

static int l_expand_as(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input"), *o = lj_tensor(L, 2, "other");
  return lj_push_tensor(L, jbx_expand_as(t, o));
}

/* unsqueeze(t, dim): the new dim's position, 1..ndim+1 (or -1 for a new last dim). */
static int l_unsqueeze(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  lua_Integer d = lj_int(L, 2, "dim");
  int nd = t->ndim + 1;
  char s[160];
  if (!((d >= 1 && d <= nd) || (d < 0 && d >= -nd)))
    lj_error(L, "unsqueeze: dim %lld out of range for a tensor of shape %s (1..%d, or -%d..-1 from the end)",
             (long long)d, jbx_shape_str(t, s, sizeof s), nd, nd);
  return lj_push_tensor(L, jbx_unsqueeze(t, d > 0 ? (int)d - 1 : (int)(d + nd)));
}

/* squeeze(t [, dim]): without dim removes every dim of size 1. */
static int l_squeeze(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  if (lua_isnoneornil(L, 2)) return lj_push_tensor(L, jbx_squeeze_all(t));
  return lj_push_tensor(L, jbx_squeeze(t, lj_dim(L, 2, t)));
}

/* ------------------------------------------------------------------ the table */

#define UNARY(n, fn) {n, K_UNARY, LJ_BOTH, {.unary = fn}, "input", NULL, 0, NULL}
#define BINARY(n, fn) {n, K_BINARY, LJ_BOTH, {.binary = fn}, "input", "other", 0, NULL}
#define ARITH(n, fn, c, mm) {n, K_ARITH, LJ_BOTH, {.binary = fn}, "input", "other", c, mm}
#define PAIR(n, fn, a, b) {n, K_PAIR, LJ_BOTH, {.binary = fn}, a, b, 0, NULL}
#define REDUCE(n, fn) {n, K_REDUCE, LJ_BOTH, {.reduce = fn}, "input", NULL, 0, NULL}
#define MINMAX(n, fn) {n, K_MINMAX, LJ_BOTH, {.minmax = fn}, "input", NULL, 0, NULL}
#define DIM(n, fn) {n, K_DIM, LJ_BOTH, {.dim = fn}, "input", NULL, 0, NULL}
#define DIM_INDEX(n, fn) {n, K_DIM_INDEX, LJ_BOTH, {.dim_index = fn}, "input", "index", 0, NULL}
#define CUSTOM(n, fn, where) {n, K_CUSTOM, where, {.custom = fn}, NULL, NULL, 0, NULL}

static const op_row ops[] = {
    /* elementwise */
    ARITH("add", jbx_add, '+', "__add"),
    ARITH("sub", jbx_sub, '-', "__sub"),
    ARITH("mul", jbx_mul, '*', "__mul"),
    ARITH("div", jbx_div, '/', "__div"),
    ARITH("pow", jbx_pow, '^', "__pow"),
    BINARY("maximum", jbx_maximum),
    BINARY("minimum", jbx_minimum),
    BINARY("gt", jbx_gt),
    BINARY("lt", jbx_lt),
    BINARY("eq", jbx_eq),
    BINARY("straight_through", jbx_straight_through),
    {"neg", K_UNARY, LJ_BOTH, {.unary = jbx_neg}, "input", NULL, 0, "__unm"},
    UNARY("exp", jbx_exp),
    UNARY("log", jbx_log),
    UNARY("sqrt", jbx_sqrt),
    UNARY("abs", jbx_abs),
    UNARY("relu", jbx_relu),
    UNARY("gelu", jbx_gelu),
    UNARY("quick_gelu", jbx_quick_gelu),
    UNARY("tanh", jbx_tanh),
    UNARY("sigmoid", jbx_sigmoid),
    CUSTOM("clamp", l_clamp, LJ_BOTH),
    CUSTOM("where", l_where, LJ_FUNC),
    CUSTOM("where", m_where, LJ_METHOD),
    CUSTOM("masked_fill", l_masked_fill, LJ_BOTH),
    /* reductions */
    REDUCE("sum", jbx_sum),
    REDUCE("mean", jbx_mean),
    REDUCE("argmax", jbx_argmax),
    REDUCE("argmin", jbx_argmin),
    REDUCE("norm", jbx_norm),
    REDUCE("logsumexp", jbx_logsumexp),
    MINMAX("max", jbx_max),
    MINMAX("min", jbx_min),
    DIM("softmax", jbx_softmax),
    DIM("log_softmax", jbx_log_softmax),
    CUSTOM("topk_mean", l_topk_mean, LJ_BOTH),
    /* linear algebra, indexing */
    PAIR("matmul", jbx_matmul, "input", "other"),
    CUSTOM("linear", l_linear, LJ_BOTH),
    CUSTOM("cross_entropy", l_cross_entropy, LJ_BOTH),
    CUSTOM("linear_cross_entropy", l_linear_cross_entropy, LJ_FUNC),
    PAIR("embedding", jbx_embedding, "weight", "ids"),
    DIM_INDEX("index_select", jbx_index_select),
    DIM_INDEX("gather", jbx_gather),
    CUSTOM("concat", l_concat, LJ_FUNC),
    CUSTOM("cat", l_concat, LJ_FUNC),
    CUSTOM("layer_norm", l_layer_norm, LJ_BOTH),
    /* views and copies */
    CUSTOM("view", l_view, LJ_BOTH),
    CUSTOM("reshape", l_view, LJ_BOTH),
    CUSTOM("flatten", l_flatten, LJ_BOTH),
    CUSTOM("transpose", l_transpose, LJ_BOTH),
    CUSTOM("permute", l_permute, LJ_BOTH),
    CUSTOM("narrow", l_narrow, LJ_BOTH),
    CUSTOM("select", l_select, LJ_BOTH),
    CUSTOM("expand", l_expand, LJ_BOTH),
    CUSTOM("expand_as", l_expand_as, LJ_BOTH),
    CUSTOM("unsqueeze", l_unsqueeze, LJ_BOTH),
    CUSTOM("squeeze", l_squeeze, LJ_BOTH),
    UNARY("contiguous", jbx_contiguous),
    UNARY("clone", jbx_clone),
    UNARY("detach", jbx_detach),
};

void lj_open_tensor_ops(lua_State *L, int mod, int meth, int mt) {
  mod = lua_absindex(L, mod);
  meth = lua_absindex(L, meth);
  mt = lua_absindex(L, mt);
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    const op_row *op = &ops[i];
    lua_pushlightuserdata(L, (void *)op);
    lj_push_named(L, op->kind == K_CUSTOM ? op->f.custom : callers[op->kind], op->name, 1);
    if (op->where & LJ_FUNC) {
      lua_pushvalue(L, -1);
      lua_setfield(L, mod, op->name);
    }
    if (op->where & LJ_METHOD) {
      lua_pushvalue(L, -1);
      lua_setfield(L, meth, op->name);
    }
    if (op->meta) {
      lua_pushvalue(L, -1);
      lua_setfield(L, mt, op->meta);
    }
    lua_pop(L, 1);
  }
}
