/* Lua binding of recompute in the backward (core/ops/recompute.c):
 *   recompute(fn, {inputs...} [, {params...}]) -> fn(inputs...)
 * fn runs once now without a graph and again in the backward, with the graph, over
 * leaves sharing the inputs' storage; params are the tensors fn reads directly (the
 * block's weights), which receive their gradients in that second run. fn must be pure:
 * the same inputs give the same output (no dropout draws, no state changes). */
#include <stdlib.h>

#include "lj.h"

/* The Lua thread that is running the current forward or backward: the recompute calls fn
 * on it. A backward started from C (not through tensor:backward) has none. */
static _Thread_local lua_State *running;

lua_State *lj_set_running(lua_State *L) {
  lua_State *prev = running;
  running = L;
  return prev;
}

typedef struct {
  lua_State *main; /* for the registry, whose lifetime is the state's */
  int ref;         /* fn in the registry */
} lua_fn;

static void free_lua_fn(void *p) {
  lua_fn *f = p;
  luaL_unref(f->main, LUA_REGISTRYINDEX, f->ref);
  free(f);
}

typedef struct {
  const lua_fn *fn;
  int n;
  jbx_tensor *const *in;
  jbx_tensor *out;
} call;

/* Under lua_pcall, so that a Lua error in fn (or out of memory) cannot jump over the
 * core's frames. */
static int call_protected(lua_State *L) {
  call *c = lua_touserdata(L, 1);
  lj_check_stack(L, c->n + 1, "recompute: pushing the inputs");
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->fn->ref);
  for (int i = 0; i < c->n; i++) {
    if (c->in[i]) lj_push_tensor(L, jbx_retain(c->in[i]));
    else lua_pushnil(L);
  }
  lua_call(L, c->n, 1);
  if (!lj_is_tensor(L, -1))
    return lj_error(L, "recompute: the function must return a tensor, got %s", lj_typename(L, -1));
  c->out = jbx_retain(lj_tensor(L, -1, "result"));
  return 0;
}

static jbx_tensor *run_lua(void *ctx, int n, jbx_tensor *const *in) {
  lua_State *L = running;
  if (!L) {
    jbx_fail("recompute: recomputing the forward needs Lua, but this backward was not started from Lua");
    return NULL;
  }
  call c = {ctx, n, in, NULL};
  lua_pushcfunction(L, call_protected);
  lua_pushlightuserdata(L, &c);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    jbx_fail("%s", msg ? msg : "recompute: error object is not a string");
    lua_pop(L, 1);
    return NULL;
  }
  return c.out;
}

/* The tensors of the array table at idx (a userdata on the stack holds the array). */
static jbx_tensor **tensor_list(lua_State *L, int idx, const char *what, int *n) {
  *n = 0;
  if (lua_isnoneornil(L, idx)) return NULL;
  lj_table(L, idx, what);
  lua_Integer len = luaL_len(L, idx);
  jbx_tensor **ts = lua_newuserdatauv(L, (size_t)(len + 1) * sizeof *ts, 0);
  for (lua_Integer i = 1; i <= len; i++) {
    lua_geti(L, idx, i);
    if (!lj_is_tensor(L, -1)) {
      lj_error(L, "%s: %s[%lld] must be a tensor, got %s", lj_fn_name(L), what, (long long)i,
               lj_typename(L, -1));
      return NULL;
    }
    ts[i - 1] = lj_tensor(L, -1, what);
    lua_pop(L, 1); /* the table keeps it alive */
  }
  *n = (int)len;
  return ts;
}

static int l_recompute(lua_State *L) {
  lj_function(L, 1, "fn");
  lua_settop(L, 3); /* the lists below go on top */
  int n_in, n_watch;
  jbx_tensor **in = tensor_list(L, 2, "inputs", &n_in);
  if (!in) return lj_arg_error(L, 2, "inputs", "a table of tensors");
  jbx_tensor **watch = tensor_list(L, 3, "params", &n_watch);
  lua_fn *f = malloc(sizeof *f);
  if (!f) return lj_error(L, "%s: out of memory", lj_fn_name(L));
  lua_pushvalue(L, 1);
  f->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  f->main = lua_tothread(L, -1);
  lua_pop(L, 1);
  lua_State *prev = lj_set_running(L);
  jbx_tensor *out = jbx_recompute(run_lua, f, free_lua_fn, n_in, in, n_watch, watch);
  lj_set_running(prev);
  return lj_push_tensor(L, out);
}

void lj_open_recompute(lua_State *L) {
  static const luaL_Reg fns[] = {{"recompute", l_recompute}, {NULL, NULL}};
  lj_setfuncs(L, fns, "");
}
