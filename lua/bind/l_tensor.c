/* Tensors in Lua: the userdata, its metatable, creation, conversion to Lua values,
 * autograd entry points and metamethods. The ops are rows of l_tensor_ops.c.
 *
 * Conventions of the Lua API:
 *   - DIMS ARE 1-BASED, like every Lua position: t:sum(1) reduces the first dim, t:size(2)
 *     is the second size; negative dims count from the end (-1 = last). The binding checks
 *     them and converts to the core's 0-based dims, so range errors speak Lua numbering.
 *   - narrow(dim, start, length) takes a 1-based start (negative: from the end).
 *   - VALUES stay as they are: indices returned by max/argmax and codes/ids in int32 tensors
 *     are 0-based (they are codebook ids and offsets, not Lua positions).
 *   - t:shape() returns a Lua sequence {d1, d2, ...}; #t is the size of dim 1.
 * Lua's GC does not see tensor storage, so each new tensor reports its bytes to the GC
 * (lj_gc_account, l_runtime.c) and long loops stay bounded in memory. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jbx_rng.h"
#include "lj_tensor.h"

/* ------------------------------------------------------------------ pushing tensors */

int lj_push_tensor(lua_State *L, jbx_tensor *t) {
  if (!t) return lj_raise(L);
  lj_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->t = t;
  luaL_setmetatable(L, LJ_TENSOR_MT);
  /* A sole owner of its storage brings new memory; a view or a shared result does not. */
  size_t hidden = sizeof(jbx_tensor) + (t->node ? sizeof(jbx_node) : 0);
  if (t->refs == 1 && t->storage && t->storage->refs == 1) hidden += t->storage->nbytes;
  lj_gc_account(L, hidden);
  return 1;
}

/* Pushes an existing tensor (e.g. t.grad) with a new reference: no new memory to report. */
static int push_shared(lua_State *L, jbx_tensor *t) {
  lj_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->t = jbx_retain(t);
  luaL_setmetatable(L, LJ_TENSOR_MT);
  return 1;
}

static jbx_dtype opt_dtype(lua_State *L, int idx, const char *fn, jbx_dtype dflt) {
  idx = lua_absindex(L, idx);
  if (!lj_opts(L, idx)) return dflt;
  lua_getfield(L, idx, "dtype");
  jbx_dtype dt = dflt;
  if (!lua_isnil(L, -1)) {
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (s && (!strcmp(s, "float32") || !strcmp(s, "float"))) dt = JBX_F32;
    else if (s && (!strcmp(s, "int32") || !strcmp(s, "int"))) dt = JBX_I32;
    else if (s) lj_error(L, "%s: option 'dtype' must be \"float32\" or \"int32\", got \"%s\"", fn, s);
    else lj_error(L, "%s: option 'dtype' must be \"float32\" or \"int32\", got %s", fn, lj_typename(L, -1));
  }
  lua_pop(L, 1);
  return dt;
}

/* ------------------------------------------------------------------ requires_grad */

void lj_set_requires_grad(lua_State *L, jbx_tensor *t, bool on) {
  if (t->requires_grad == on) return;
  const char *fn = lj_fn_name(L);
  char s[160];
  if (t->dtype != JBX_F32)
    lj_error(L, "%s: requires_grad needs a float32 tensor, this one is int32 %s", fn, jbx_shape_str(t, s, sizeof s));
  if (t->node)
    lj_error(L, "%s: requires_grad can only be changed on a leaf tensor; this one was made by '%s' (use t:detach())",
              fn, t->node->op);
  t->requires_grad = on;
}

/* Applies the requires_grad option of the table at idx to the tensor on top of the stack. */
static void apply_requires_grad(lua_State *L, int idx, const char *fn) {
  if (lj_opt_bool_field(L, idx, "requires_grad", false))
    lj_set_requires_grad(L, lj_tensor(L, -1, "input"), true);
}

/* ------------------------------------------------------------------ creation */

static const char *const k_create_opts[] = {"dtype", "requires_grad", NULL};

/* Walks the first elements of the nested table at idx to find the shape. */
static int nested_shape(lua_State *L, int idx, int64_t *shape, const char *fn) {
  int nd = 0;
  lua_pushvalue(L, idx);
  for (;;) {
    if (nd == JBX_MAX_DIMS) lj_error(L, "%s: nested table deeper than %d dims", fn, JBX_MAX_DIMS);
    int64_t n = (int64_t)lua_rawlen(L, -1);
    shape[nd++] = n;
    if (n == 0) break;
    int ty = lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
    if (ty == LUA_TTABLE && !lj_is_tensor(L, -1)) continue;
    if (ty != LUA_TNUMBER) {
      char where[3 * JBX_MAX_DIMS + 1] = "";
      for (int d = 0; d < nd; d++) strcat(where, "[1]");
      lj_error(L, "%s: element %s is %s, expected a number", fn, where, lj_typename(L, -1));
    }
    break;
  }
  lua_pop(L, 1);
  return nd;
}

static void path_str(char *buf, size_t size, const int64_t *path, int depth) {
  size_t n = 0;
  buf[0] = '\0';
  for (int d = 0; d < depth && n < size; d++) n += (size_t)snprintf(buf + n, size - n, "[%lld]", (long long)path[d] + 1);
}

/* Fills dst (row-major) from the nested table on top of the stack, checking every level. */
static void fill_nested(lua_State *L, jbx_tensor *t, int depth, int64_t *path, int64_t *pos, const char *fn) {
  int64_t want = t->shape[depth], got = (int64_t)lua_rawlen(L, -1);
  if (got != want)
    lj_error(L, "%s: ragged nested table at depth %d: expected %lld elements, got %lld", fn, depth + 1,
              (long long)want, (long long)got);
  char where[128];
  for (int64_t i = 0; i < want; i++) {
    path[depth] = i;
    int ty = lua_rawgeti(L, -1, (lua_Integer)i + 1);
    if (depth + 1 < t->ndim) {
      if (ty != LUA_TTABLE || lj_is_tensor(L, -1)) {
        path_str(where, sizeof where, path, depth + 1);
        lj_error(L, "%s: ragged nested table at depth %d: element %s is %s, expected a table of %lld elements",
                  fn, depth + 2, where, lj_typename(L, -1), (long long)t->shape[depth + 1]);
      }
      fill_nested(L, t, depth + 1, path, pos, fn);
    } else {
      if (ty != LUA_TNUMBER) {
        path_str(where, sizeof where, path, depth + 1);
        if (ty == LUA_TTABLE && !lj_is_tensor(L, -1))
          lj_error(L, "%s: ragged nested table at depth %d: element %s is a table, expected a number", fn,
                    depth + 1, where);
        lj_error(L, "%s: element %s is %s, expected a number", fn, where, lj_typename(L, -1));
      }
      if (t->dtype == JBX_I32) {
        int ok = 0;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (!ok || v < INT32_MIN || v > INT32_MAX) {
          path_str(where, sizeof where, path, depth + 1);
          lj_error(L, "%s: element %s = %g is not an int32 integer", fn, where, lua_tonumber(L, -1));
        }
        jbx_i32(t)[(*pos)++] = (int32_t)v;
      } else {
        jbx_f32(t)[(*pos)++] = (float)lua_tonumber(L, -1);
      }
    }
    lua_pop(L, 1);
  }
}

/* Pushes a new tensor from the nested table at idx (the tensor is on the stack while filling,
 * so an error leaves nothing leaked). Shape may be forced (from_ints with a flat table). */
static void push_from_table(lua_State *L, int idx, jbx_dtype dt, const char *fn) {
  idx = lua_absindex(L, idx);
  int64_t shape[JBX_MAX_DIMS];
  int nd = nested_shape(L, idx, shape, fn);
  jbx_tensor *t = jbx_empty(dt, nd, shape);
  lj_push_tensor(L, t);
  int64_t path[JBX_MAX_DIMS] = {0}, pos = 0;
  lua_pushvalue(L, idx);
  fill_nested(L, t, 0, path, &pos, fn);
  lua_pop(L, 1);
}

static void push_number_tensor(lua_State *L, int idx, jbx_dtype dt, const char *fn) {
  if (dt == JBX_I32) {
    int ok = 0;
    lua_Integer v = lua_tointegerx(L, idx, &ok);
    if (!ok || v < INT32_MIN || v > INT32_MAX)
      lj_error(L, "%s: %g is not an int32 integer", fn, lua_tonumber(L, idx));
    int32_t x = (int32_t)v;
    lj_push_tensor(L, jbx_from_ints(0, NULL, &x));
  } else {
    lj_push_tensor(L, jbx_scalar((float)lua_tonumber(L, idx)));
  }
}

/* tensor(data, {dtype=, requires_grad=}): data is a number, a nested table or a tensor (copied). */
static int l_tensor(lua_State *L) {
  const char *fn = "tensor";
  lua_settop(L, 2); /* the options slot stays fixed while results are pushed */
  lj_check_options(L, 2, k_create_opts);
  jbx_dtype dt = opt_dtype(L, 2, fn, JBX_F32);
  if (lua_type(L, 1) == LUA_TNUMBER) {
    push_number_tensor(L, 1, dt, fn);
  } else if (lj_is_tensor(L, 1)) {
    jbx_tensor *src = lj_tensor(L, 1, "input");
    jbx_tensor *c = jbx_empty(src->dtype, src->ndim, src->shape);
    if (c && jbx_copy_(c, src) < 0) {
      jbx_release(c);
      c = NULL;
    }
    lj_push_tensor(L, c);
    if (c->dtype != dt) lj_push_tensor(L, jbx_to_dtype(c, dt));
  } else if (lua_type(L, 1) == LUA_TTABLE) {
    push_from_table(L, 1, dt, fn);
  } else {
    lj_arg_error(L, 1, "data", "a number, a nested table of numbers or a tensor");
  }
  apply_requires_grad(L, 2, fn);
  return 1;
}

/* from_ints(nested_table) or from_ints(flat_table, shape): an int32 tensor (codes, ids). */
static int l_from_ints(lua_State *L) {
  const char *fn = "from_ints";
  if (lua_type(L, 1) != LUA_TTABLE)
    lj_arg_error(L, 1, "data", "a table of integers");
  if (lua_isnoneornil(L, 2)) {
    push_from_table(L, 1, JBX_I32, fn);
    return 1;
  }
  int64_t shape[JBX_MAX_DIMS];
  int nd = lj_shape_args(L, 2, shape, NULL, false);
  int64_t n = 1;
  for (int d = 0; d < nd; d++) n *= shape[d];
  int64_t got = (int64_t)lua_rawlen(L, 1);
  if (got != n)
    lj_error(L, "from_ints: the table has %lld elements, the shape needs %lld", (long long)got, (long long)n);
  push_from_table(L, 1, JBX_I32, fn);
  lj_push_tensor(L, jbx_view(lj_tensor(L, -1, "input"), nd, shape));
  return 1;
}

/* zeros/ones/empty(shape..., opts) and full(shape..., value, opts). */
static int create_filled(lua_State *L, const char *fn, int kind, double value_in) {
  int64_t shape[JBX_MAX_DIMS];
  int next, nd;
  double value = value_in;
  if (kind == 'f' && lua_type(L, 1) == LUA_TNUMBER) {
    /* full(2, 3, value): the last of the leading numbers is the value. */
    int k = 0;
    while (lua_type(L, k + 1) == LUA_TNUMBER) k++;
    if (k < 2) lj_num(L, 2, "value");
    lua_pushvalue(L, k);
    lua_pushnil(L);
    lua_replace(L, k); /* hide the value from the shape parser */
    nd = lj_shape_args(L, 1, shape, NULL, false);
    value = lua_tonumber(L, -1);
    lua_pop(L, 1);
    next = k + 1;
  } else {
    nd = lj_shape_args(L, 1, shape, &next, false);
    if (kind == 'f') value = lj_num(L, next++, "value");
  }
  lua_settop(L, next);
  lj_check_options(L, next, k_create_opts);
  jbx_dtype dt = opt_dtype(L, next, fn, JBX_F32);
  jbx_tensor *t = jbx_empty(dt, nd, shape);
  lj_push_tensor(L, t);
  int64_t n = jbx_numel(t);
  if (kind != 'e' && n > 0) {
    if (dt == JBX_I32) {
      if (value != floor(value) || value < INT32_MIN || value > INT32_MAX)
        lj_error(L, "%s: value %g is not an int32 integer", fn, value);
      int32_t *p = jbx_i32(t), v = (int32_t)value;
      for (int64_t i = 0; i < n; i++) p[i] = v;
    } else if (value == 0) {
      memset(jbx_f32(t), 0, (size_t)n * sizeof(float));
    } else {
      float *p = jbx_f32(t), v = (float)value;
      for (int64_t i = 0; i < n; i++) p[i] = v;
    }
  }
  apply_requires_grad(L, next, fn);
  return 1;
}

static int l_zeros(lua_State *L) { return create_filled(L, "zeros", 'z', 0); }
static int l_ones(lua_State *L) { return create_filled(L, "ones", 'o', 1); }
static int l_empty(lua_State *L) { return create_filled(L, "empty", 'e', 0); }
static int l_full(lua_State *L) { return create_filled(L, "full", 'f', 0); }

/* zeros_like/ones_like(t): float32 tensors of t's shape. */
static int l_zeros_like(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  jbx_tensor *z = jbx_zeros(t->ndim, t->shape);
  return lj_push_tensor(L, z);
}
static int l_ones_like(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  return lj_push_tensor(L, jbx_full(t->ndim, t->shape, 1.0f));
}

/* arange(stop) or arange(start, stop[, step]) with opts {dtype, requires_grad}. */
static int l_arange(lua_State *L) {
  const char *fn = "arange";
  int nnum = 0;
  while (nnum < 3 && lua_type(L, nnum + 1) == LUA_TNUMBER) nnum++;
  if (nnum == 0) lj_num(L, 1, "stop");
  double start = 0, stop, step = 1;
  if (nnum == 1) stop = lua_tonumber(L, 1);
  else {
    start = lua_tonumber(L, 1);
    stop = lua_tonumber(L, 2);
    if (nnum == 3) step = lua_tonumber(L, 3);
  }
  int oi = nnum + 1;
  lua_settop(L, oi);
  lj_check_options(L, oi, k_create_opts);
  jbx_dtype dt = opt_dtype(L, oi, fn, JBX_F32);
  jbx_tensor *t = jbx_arange(start, stop, step);
  lj_push_tensor(L, t);
  if (dt == JBX_I32) lj_push_tensor(L, jbx_to_dtype(t, JBX_I32));
  apply_requires_grad(L, oi, fn);
  return 1;
}

static int random_tensor(lua_State *L, const char *fn, bool normal) {
  static const char *const known[] = {"seed", "requires_grad", NULL};
  int64_t shape[JBX_MAX_DIMS];
  int next;
  int nd = lj_shape_args(L, 1, shape, &next, false);
  lua_settop(L, next);
  lj_check_options(L, next, known);
  jbx_rng own, *rng = NULL;
  if (lj_opts(L, next)) {
    lua_getfield(L, next, "seed");
    bool has = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (has) {
      jbx_rng_seed(&own, (uint64_t)lj_opt_int_field(L, next, "seed", 0));
      rng = &own;
    }
  }
  lj_push_tensor(L, normal ? jbx_randn(nd, shape, rng) : jbx_rand(nd, shape, rng));
  apply_requires_grad(L, next, fn);
  return 1;
}

static int l_rand(lua_State *L) { return random_tensor(L, "rand", false); }
static int l_randn(lua_State *L) { return random_tensor(L, "randn", true); }

static int l_manual_seed(lua_State *L) {
  jbx_manual_seed((uint64_t)lj_int(L, 1, "seed"));
  return 0;
}

/* ------------------------------------------------------------------ inspection */

static int m_shape(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  lua_createtable(L, t->ndim, 0);
  for (int d = 0; d < t->ndim; d++) {
    lua_pushinteger(L, t->shape[d]);
    lua_rawseti(L, -2, d + 1);
  }
  return 1;
}

static int m_size(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  if (lua_isnoneornil(L, 2)) return m_shape(L);
  if (t->ndim == 0) lj_error(L, "size: a 0-dim tensor has no dims");
  lua_pushinteger(L, t->shape[lj_dim(L, 2, t)]);
  return 1;
}

static int m_numel(lua_State *L) {
  lua_pushinteger(L, jbx_numel(lj_tensor(L, 1, "input")));
  return 1;
}

static int m_dim(lua_State *L) {
  lua_pushinteger(L, lj_tensor(L, 1, "input")->ndim);
  return 1;
}

static int m_is_contiguous(lua_State *L) {
  lua_pushboolean(L, jbx_is_contiguous(lj_tensor(L, 1, "input")));
  return 1;
}

static void push_elem(lua_State *L, const jbx_tensor *t, int64_t i) {
  double v = jbx_get(t, i);
  if (t->dtype == JBX_I32) lua_pushinteger(L, (lua_Integer)v);
  else lua_pushnumber(L, v);
}

static int m_item(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  if (jbx_numel(t) != 1) {
    char s[160];
    lj_error(L, "item: tensor of shape %s has %lld elements, expected exactly one", jbx_shape_str(t, s, sizeof s),
              (long long)jbx_numel(t));
  }
  push_elem(L, t, 0);
  return 1;
}

static void totable_rec(lua_State *L, const jbx_tensor *t, int depth, int64_t *pos) {
  lua_createtable(L, (int)t->shape[depth], 0);
  for (int64_t i = 0; i < t->shape[depth]; i++) {
    if (depth + 1 < t->ndim) totable_rec(L, t, depth + 1, pos);
    else push_elem(L, t, (*pos)++);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* Nested Lua tables (a number for a 0-dim tensor). */
static int m_totable(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  if (t->ndim == 0) {
    push_elem(L, t, 0);
    return 1;
  }
  lj_check_stack(L, t->ndim + 4, "nesting too deep");
  int64_t pos = 0;
  totable_rec(L, t, 0, &pos);
  return 1;
}

static int t_tostring(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  char s[160];
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "tensor");
  luaL_addstring(&b, jbx_shape_str(t, s, sizeof s));
  luaL_addstring(&b, t->dtype == JBX_I32 ? " int32 {" : " float32 {");
  int64_t n = jbx_numel(t), shown = n < 8 ? n : 8;
  for (int64_t i = 0; i < shown; i++) {
    char v[48];
    double x = jbx_get(t, i);
    if (t->dtype == JBX_I32) snprintf(v, sizeof v, "%s%lld", i ? ", " : "", (long long)x);
    else snprintf(v, sizeof v, "%s%.6g", i ? ", " : "", x);
    luaL_addstring(&b, v);
  }
  if (shown < n) luaL_addstring(&b, ", ...");
  luaL_addstring(&b, "}");
  luaL_pushresult(&b);
  return 1;
}

static int t_len(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  if (t->ndim == 0) lj_error(L, "tensor: # (length) of a 0-dim tensor is undefined");
  lua_pushinteger(L, t->shape[0]);
  return 1;
}

/* ------------------------------------------------------------------ conversions & in-place */

static int to_dtype_or_self(lua_State *L, jbx_dtype dt, const char *fn) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  if (t->dtype == dt) {
    lua_settop(L, 1);
    return 1;
  }
  return lj_push_tensor(L, jbx_to_dtype(t, dt));
}
static int m_float(lua_State *L) { return to_dtype_or_self(L, JBX_F32, "float"); }
static int m_int(lua_State *L) { return to_dtype_or_self(L, JBX_I32, "int"); }

static int m_copy_(lua_State *L) {
  jbx_tensor *dst = lj_tensor(L, 1, "input"), *src = lj_tensor(L, 2, "source");
  if (jbx_copy_(dst, src) < 0) lj_raise(L);
  lua_settop(L, 1);
  return 1;
}

static int m_fill_(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  double v = lj_num(L, 2, "value");
  if (t->dtype == JBX_I32) {
    if (v != floor(v) || v < INT32_MIN || v > INT32_MAX) lj_error(L, "fill_: value %g is not an int32 integer", v);
    int32_t x = (int32_t)v;
    jbx_tensor *s = jbx_from_ints(0, NULL, &x);
    jbx_tensor *e = s ? jbx_expand(s, t->ndim, t->shape) : NULL;
    int rc = e ? jbx_copy_(t, e) : -1;
    jbx_release(e);
    jbx_release(s);
    if (rc < 0) lj_raise(L);
  } else if (jbx_fill_(t, (float)v) < 0) {
    lj_raise(L);
  }
  lua_settop(L, 1);
  return 1;
}

/* ------------------------------------------------------------------ autograd */

static int m_backward(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input"), *g = lj_opt_tensor(L, 2, "gradient");
  lua_State *prev = lj_set_running(L); /* checkpointed blocks recompute on this thread */
  int rc = jbx_backward(t, g);
  lj_set_running(prev);
  if (rc < 0) lj_raise(L);
  return 0;
}

static int m_zero_grad(lua_State *L) {
  jbx_zero_grad(lj_tensor(L, 1, "input"));
  return 0;
}

static int m_requires_grad_(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  lj_set_requires_grad(L, t, lj_opt_bool(L, 2, "flag", true));
  lua_settop(L, 1);
  return 1;
}

static int guard_close(lua_State *L) {
  bool *prev = lua_touserdata(L, 1);
  if (prev) jbx_set_grad_enabled(*prev);
  return 0;
}

/* no_grad(fn, ...): calls fn(...) with grad recording off and returns its results. The mode
 * is restored by a to-be-closed guard, so an error passes through untouched (full traceback). */
static int l_no_grad(lua_State *L) {
  lj_function(L, 1, "fn");
  int n = lua_gettop(L);
  bool *prev = lua_newuserdatauv(L, sizeof *prev, 0);
  *prev = jbx_grad_enabled();
  luaL_setmetatable(L, "jbx.GradGuard");
  lua_toclose(L, n + 1);
  jbx_set_grad_enabled(false);
  lj_check_stack(L, n + 2, "too many arguments");
  for (int i = 1; i <= n; i++) lua_pushvalue(L, i);
  lua_call(L, n - 1, LUA_MULTRET);
  return lua_gettop(L) - (n + 1);
}

static int l_set_grad_enabled(lua_State *L) {
  lua_pushboolean(L, jbx_set_grad_enabled(lj_bool(L, 1, "enabled")));
  return 1;
}

static int l_is_grad_enabled(lua_State *L) {
  lua_pushboolean(L, jbx_grad_enabled());
  return 1;
}

static int l_is_tensor(lua_State *L) {
  lua_pushboolean(L, lj_is_tensor(L, 1));
  return 1;
}

/* ------------------------------------------------------------------ metamethods */

static int t_gc(lua_State *L) {
  lj_box *b = luaL_testudata(L, 1, LJ_TENSOR_MT);
  if (b && b->t) {
    jbx_release(b->t);
    b->t = NULL;
  }
  return 0;
}

/* Fields read through __index after the methods: grad, requires_grad, dtype, is_leaf, grad_fn. */
static int t_index(lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    const char *k = lua_tostring(L, 2);
    jbx_tensor *t = lj_tensor(L, 1, "input");
    if (!strcmp(k, "grad")) {
      if (!t->grad) return 0;
      return push_shared(L, t->grad);
    }
    if (!strcmp(k, "requires_grad")) {
      lua_pushboolean(L, t->requires_grad);
      return 1;
    }
    if (!strcmp(k, "dtype")) {
      lua_pushstring(L, jbx_dtype_name(t->dtype));
      return 1;
    }
    if (!strcmp(k, "is_leaf")) {
      lua_pushboolean(L, t->node == NULL);
      return 1;
    }
    if (!strcmp(k, "grad_fn")) {
      if (!t->node) return 0;
      lua_pushstring(L, t->node->op);
      return 1;
    }
    return 0;
  }
  if (lua_type(L, 2) == LUA_TNUMBER)
    lj_error(L, "tensor: t[i] indexing is not supported; use t:narrow(dim, start, length) or t:select(dim, i)");
  return 0;
}

static int t_newindex(lua_State *L) {
  jbx_tensor *t = lj_tensor(L, 1, "input");
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  if (k && !strcmp(k, "requires_grad")) {
    if (lua_type(L, 3) != LUA_TBOOLEAN)
      lj_error(L, "tensor: requires_grad must be a boolean, got %s", lj_typename(L, 3));
    lj_set_requires_grad(L, t, lua_toboolean(L, 3));
    return 0;
  }
  if (k && !strcmp(k, "grad")) {
    jbx_tensor *g = NULL;
    if (!lua_isnil(L, 3)) {
      if (!lj_is_tensor(L, 3)) lj_error(L, "tensor: grad must be a tensor or nil, got %s", lj_typename(L, 3));
      g = lj_tensor(L, 3, "grad");
      char a[160], b[160];
      if (!jbx_same_shape(g, t) || g->dtype != JBX_F32)
        lj_error(L, "tensor: grad must be a float32 tensor of shape %s, got %s %s", jbx_shape_str(t, a, sizeof a),
                  jbx_dtype_name(g->dtype), jbx_shape_str(g, b, sizeof b));
    }
    jbx_retain(g);
    jbx_release(t->grad);
    t->grad = g;
    return 0;
  }
  if (k) lj_error(L, "tensor: cannot set field '%s' (settable: requires_grad, grad)", k);
  return lj_error(L, "tensor: cannot set a %s key (settable: requires_grad, grad)", lj_typename(L, 2));
}

/* ------------------------------------------------------------------ registration */

typedef struct {
  const char *name;
  lua_CFunction fn;
  int where; /* LJ_FUNC, LJ_METHOD or LJ_BOTH */
} tensor_reg;

static const tensor_reg tensor_regs[] = {
    {"tensor", l_tensor, LJ_FUNC},
    {"from_ints", l_from_ints, LJ_FUNC},
    {"zeros", l_zeros, LJ_FUNC},
    {"ones", l_ones, LJ_FUNC},
    {"empty", l_empty, LJ_FUNC},
    {"full", l_full, LJ_FUNC},
    {"zeros_like", l_zeros_like, LJ_BOTH},
    {"ones_like", l_ones_like, LJ_BOTH},
    {"arange", l_arange, LJ_FUNC},
    {"rand", l_rand, LJ_FUNC},
    {"randn", l_randn, LJ_FUNC},
    {"manual_seed", l_manual_seed, LJ_FUNC},
    {"no_grad", l_no_grad, LJ_FUNC},
    {"set_grad_enabled", l_set_grad_enabled, LJ_FUNC},
    {"is_grad_enabled", l_is_grad_enabled, LJ_FUNC},
    {"is_tensor", l_is_tensor, LJ_FUNC},
    {"shape", m_shape, LJ_METHOD},
    {"size", m_size, LJ_METHOD},
    {"numel", m_numel, LJ_BOTH},
    {"dim", m_dim, LJ_METHOD},
    {"is_contiguous", m_is_contiguous, LJ_METHOD},
    {"item", m_item, LJ_METHOD},
    {"totable", m_totable, LJ_METHOD},
    {"float", m_float, LJ_METHOD},
    {"int", m_int, LJ_METHOD},
    {"copy_", m_copy_, LJ_METHOD},
    {"fill_", m_fill_, LJ_METHOD},
    {"backward", m_backward, LJ_METHOD},
    {"zero_grad", m_zero_grad, LJ_METHOD},
    {"requires_grad_", m_requires_grad_, LJ_METHOD},
    {NULL, NULL, 0},
};

void lj_open_tensor(lua_State *L) {
  int mod = lua_gettop(L);
  lua_newtable(L); /* methods */
  int meth = lua_gettop(L);
  for (const tensor_reg *r = tensor_regs; r->name; r++) {
    lj_push_named(L, r->fn, r->name, 0);
    if (r->where & LJ_FUNC) {
      lua_pushvalue(L, -1);
      lua_setfield(L, mod, r->name);
    }
    if (r->where & LJ_METHOD) lua_setfield(L, meth, r->name);
    else lua_pop(L, 1);
  }

  luaL_newmetatable(L, LJ_TENSOR_MT);
  int mt = lua_gettop(L);
  static const luaL_Reg mm[] = {
      {"__newindex", t_newindex}, {"__tostring", t_tostring}, {"__len", t_len},
      {"__gc", t_gc},             {"__close", t_gc},          {NULL, NULL},
  };
  for (const luaL_Reg *r = mm; r->name; r++) { /* their errors speak of "tensor" */
    lj_push_named(L, r->func, "tensor", 0);
    lua_setfield(L, mt, r->name);
  }
  /* (Re)bind __index to this module's methods table. */
  lua_pushvalue(L, meth);
  lj_push_named(L, t_index, "tensor", 1);
  lua_setfield(L, mt, "__index");
  lj_open_tensor_ops(L, mod, meth, mt);
  lua_pop(L, 1);

  if (luaL_newmetatable(L, "jbx.GradGuard")) {
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);

  lua_setfield(L, mod, "tensor_methods"); /* pops methods: Lua code may add methods to it */
}
