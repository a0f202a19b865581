/* The seeded generator of the core (core/rng.c) as a Lua value whose state checkpoints:
 *   rng(seed | state) -> Rng    r:state() -> 64 hex digits (JSON-safe, unlike 64-bit ints)
 *   r:set_state(hex | {4 integers}) -> r    r:seed(n) -> r    r:clone() -> Rng
 *   r:uniform() -> [0, 1)    r:normal() -> N(0, 1)    r:below(n) -> [0, n) */
#include <stdio.h>
#include <string.h>

#include "jbx_rng.h"
#include "lj.h"

#define LJ_RNG_MT "jbx.Rng"

static jbx_rng *check_rng(lua_State *L, int idx) {
  jbx_rng *r = luaL_testudata(L, idx, LJ_RNG_MT);
  if (!r) lj_arg_error(L, idx, "self", "an Rng");
  return r;
}

static jbx_rng *push_rng(lua_State *L) {
  jbx_rng *r = lua_newuserdatauv(L, sizeof *r, 0);
  luaL_setmetatable(L, LJ_RNG_MT);
  return r;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Reads a state (64 hex digits or a table of 4 integers) at idx into s; raises on misuse. */
static void read_state(lua_State *L, int idx, uint64_t s[4]) {
  const char *fn = lj_fn_name(L);
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *h = lua_tolstring(L, idx, &len);
    if (len != 64) lj_error(L, "%s: a state string has 64 hex digits, got %d characters", fn, (int)len);
    for (int i = 0; i < 4; i++) {
      uint64_t v = 0;
      for (int c = 0; c < 16; c++) {
        int dv = hex_digit(h[i * 16 + c]);
        if (dv < 0) lj_error(L, "%s: '%c' in the state string is not a hex digit", fn, h[i * 16 + c]);
        v = v << 4 | (uint64_t)dv;
      }
      s[i] = v;
    }
  } else if (lua_type(L, idx) == LUA_TTABLE) {
    if (lua_rawlen(L, idx) != 4)
      lj_error(L, "%s: a state table has 4 integers, got %d entries", fn, (int)lua_rawlen(L, idx));
    for (int i = 0; i < 4; i++) {
      int ok = 0;
      lua_rawgeti(L, idx, i + 1);
      lua_Integer v = lua_tointegerx(L, -1, &ok);
      if (!ok) lj_error(L, "%s: state entry %d must be an integer, got %s", fn, i + 1, lj_typename(L, -1));
      s[i] = (uint64_t)v;
      lua_pop(L, 1);
    }
  } else {
    lj_arg_error(L, idx, "state", "a string of 64 hex digits or a table of 4 integers");
  }
  if (!(s[0] | s[1] | s[2] | s[3])) lj_error(L, "%s: the all-zero state is not valid", fn);
}

static int l_rng(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TTABLE) {
    uint64_t s[4];
    read_state(L, 1, s);
    memcpy(push_rng(L)->s, s, sizeof s);
    return 1;
  }
  int ok = 0;
  lua_Integer seed = lua_tointegerx(L, 1, &ok);
  if (!ok || lua_type(L, 1) != LUA_TNUMBER) lj_arg_error(L, 1, "seed", "an integer seed or a state");
  jbx_rng_seed(push_rng(L), (uint64_t)seed);
  return 1;
}

static int l_rng_state(lua_State *L) {
  jbx_rng *r = check_rng(L, 1);
  char h[65];
  for (int i = 0; i < 4; i++) snprintf(h + 16 * i, 17, "%016llx", (unsigned long long)r->s[i]);
  lua_pushlstring(L, h, 64);
  return 1;
}

static int l_rng_set_state(lua_State *L) {
  jbx_rng *r = check_rng(L, 1);
  uint64_t s[4];
  read_state(L, 2, s);
  memcpy(r->s, s, sizeof s);
  lua_settop(L, 1);
  return 1;
}

static int l_rng_seed(lua_State *L) {
  jbx_rng *r = check_rng(L, 1);
  jbx_rng_seed(r, (uint64_t)lj_int(L, 2, "seed"));
  lua_settop(L, 1);
  return 1;
}

static int l_rng_clone(lua_State *L) {
  jbx_rng *r = check_rng(L, 1);
  *push_rng(L) = *r;
  return 1;
}

static int l_rng_uniform(lua_State *L) {
  lua_pushnumber(L, jbx_rng_uniform(check_rng(L, 1)));
  return 1;
}

static int l_rng_normal(lua_State *L) {
  lua_pushnumber(L, jbx_rng_normal(check_rng(L, 1)));
  return 1;
}

/* r:below(n): a uniform integer in [0, n), unbiased (0-based, like codes). */
static int l_rng_below(lua_State *L) {
  jbx_rng *r = check_rng(L, 1);
  lua_Integer n = lj_int_in(L, 2, "n", 1, LUA_MAXINTEGER);
  lua_pushinteger(L, (lua_Integer)jbx_rng_below(r, (uint64_t)n));
  return 1;
}

static int l_rng_tostring(lua_State *L) {
  l_rng_state(L);
  lua_pushfstring(L, "Rng(%s)", lua_tostring(L, -1));
  return 1;
}

jbx_rng *lj_rng_arg(lua_State *L, int idx, jbx_rng *own, const char *what) {
  if (lua_isnoneornil(L, idx)) return jbx_default_rng();
  jbx_rng *r = luaL_testudata(L, idx, LJ_RNG_MT);
  if (r) return r;
  int ok = 0;
  lua_Integer seed = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &ok) : 0;
  if (!ok) lj_error(L, "%s: %s must be an Rng or an integer seed, got %s", lj_fn_name(L), what, lj_typename(L, idx));
  jbx_rng_seed(own, (uint64_t)seed);
  return own;
}

void lj_open_rng(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"state", l_rng_state}, {"set_state", l_rng_set_state}, {"seed", l_rng_seed},
      {"clone", l_rng_clone}, {"uniform", l_rng_uniform},     {"normal", l_rng_normal},
      {"below", l_rng_below}, {NULL, NULL},
  };
  if (luaL_newmetatable(L, LJ_RNG_MT)) {
    lua_newtable(L);
    lj_setfuncs(L, methods, "rng:");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_rng_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"rng", l_rng}, {NULL, NULL}};
  lj_setfuncs(L, fns, "");
}
