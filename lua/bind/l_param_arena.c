/* Lua binding of the flat parameter arenas (core/include/jbx_param_arena.h), used by
 * lua/jukebox/optim.lua:
 *   param_arena({p1, p2, ...}) -> arena   (moves the parameters' values in; grads zeroed)
 *   arena:size() -> elements per arena (gaps included)   arena:count() -> parameters
 *   arena:weights() -> [size] tensor over every parameter, its grad the gradient arena
 *   arena:grads() -> [size] gradient arena
 *   arena:slot(flat, i) -> view of flat [size] shaped as parameter i (1-based)
 *   arena:index(p) -> i of parameter p, or nil
 *   arena:collect_grads()  every grad back in its slot (a replaced one copied in)
 *   arena:zero_grads()     one memset */
#include "jbx_param_arena.h"
#include "lj.h"

#define ARENA_MT "jbx.ParamArena"

typedef struct {
  jbx_param_arena *a;
} arena_box;

static jbx_param_arena *check_arena(lua_State *L) {
  arena_box *b = luaL_testudata(L, 1, ARENA_MT);
  if (!b) lj_arg_error(L, 1, "self", "a ParamArena");
  return b->a;
}

static int arena_gc(lua_State *L) {
  arena_box *b = luaL_checkudata(L, 1, ARENA_MT);
  jbx_param_arena_free(b->a);
  b->a = NULL;
  return 0;
}

static int l_param_arena(lua_State *L) {
  lj_table(L, 1, "parameters");
  int n = (int)luaL_len(L, 1);
  arena_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->a = NULL;
  luaL_setmetatable(L, ARENA_MT);
  jbx_tensor **ps = lua_newuserdatauv(L, sizeof *ps * (size_t)(n > 0 ? n : 1), 0); /* freed by the GC */
  for (int i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    if (!lj_is_tensor(L, -1))
      lj_error(L, "%s: parameter %d must be a tensor, got %s", lj_fn_name(L), i, lj_typename(L, -1));
    ps[i - 1] = lj_tensor(L, -1, "parameter");
    lua_pop(L, 1); /* still held by the table */
  }
  b->a = jbx_param_arena_new(ps, n);
  if (!b->a) return lj_raise(L);
  lua_pop(L, 1);
  return 1;
}

static int l_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_arena(L)->total);
  return 1;
}

static int l_count(lua_State *L) {
  lua_pushinteger(L, check_arena(L)->n);
  return 1;
}

static int l_weights(lua_State *L) { return lj_push_tensor(L, jbx_retain(check_arena(L)->weights)); }
static int l_grads(lua_State *L) { return lj_push_tensor(L, jbx_retain(check_arena(L)->grads)); }

static int l_slot(lua_State *L) {
  jbx_param_arena *a = check_arena(L);
  jbx_tensor *flat = lj_tensor(L, 2, "flat");
  int i = (int)lj_int_in(L, 3, "index", 1, a->n);
  return lj_push_tensor(L, jbx_param_arena_slot(a, flat, i - 1));
}

static int l_index(lua_State *L) {
  int i = jbx_param_arena_find(check_arena(L), lj_tensor(L, 2, "parameter"));
  if (i < 0) return 0;
  lua_pushinteger(L, i + 1);
  return 1;
}

static int l_collect_grads(lua_State *L) {
  if (jbx_param_arena_collect_grads(check_arena(L)) < 0) return lj_raise(L);
  return 0;
}

static int l_zero_grads(lua_State *L) {
  if (jbx_param_arena_zero_grads(check_arena(L)) < 0) return lj_raise(L);
  return 0;
}

void lj_open_param_arena(lua_State *L) {
  static const luaL_Reg methods[] = {{"size", l_size},       {"count", l_count},
                                     {"weights", l_weights}, {"grads", l_grads},
                                     {"slot", l_slot},       {"index", l_index},
                                     {"collect_grads", l_collect_grads},
                                     {"zero_grads", l_zero_grads},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, ARENA_MT)) {
    lua_newtable(L);
    lj_setfuncs(L, methods, "param_arena:");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, arena_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"param_arena", l_param_arena}, {NULL, NULL}};
  lj_setfuncs(L, fns, "");
}
