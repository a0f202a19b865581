/* Lua binding of the VQ bottleneck (core/include/jbx_vq.h) and of the seeded generator
 * that restarts dead codes, whose state a checkpoint saves:
 *   rng(seed | state) -> Rng    r:state() -> 64 hex digits (JSON-safe, unlike 64-bit ints)
 *   r:set_state(hex | {4 integers}) -> r    r:seed(n) -> r    r:clone() -> Rng
 *   r:uniform() -> [0, 1)    r:normal() -> N(0, 1)
 *   vq_assign(x, k) -> codes (int32 [N], 0-based ids), min_dist [N]
 *   vq_dequantise(k, codes) -> [..., D]          (differentiable in k)
 *   vq_quantise(x, k) -> codes, x_q, commit, fit (x_q straight-through, commit loss)
 *   vq_prenorm(x) -> pn
 *   vq_init(k, k_sum, k_elem, x [, rng | seed])
 *   vq_ema_update(k, k_sum, k_elem, x, codes [, {mu = 0.99, threshold = 1.0, rng = Rng | seed,
 *                 restart = true}])
 *     -> {usage =, used_curr =, entropy =, dk =, fit =, pn =}
 *     restart = false: codes below the threshold are not restarted from x (no rng draws).
 * Without an rng, vq_init and vq_ema_update draw from the default stream (manual_seed). */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "jbx_rng.h"
#include "jbx_vq.h"
#include "lj.h"

#define LJ_RNG_MT "jbx.Rng"

/* ---- the Rng userdata ---- */

static jbx_rng *check_rng(lua_State *L, int idx) { return luaL_checkudata(L, idx, LJ_RNG_MT); }

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
static void read_state(lua_State *L, int idx, const char *fn, uint64_t s[4]) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *h = lua_tolstring(L, idx, &len);
    if (len != 64) luaL_error(L, "%s: a state string has 64 hex digits, got %d characters", fn, (int)len);
    for (int i = 0; i < 4; i++) {
      uint64_t v = 0;
      for (int c = 0; c < 16; c++) {
        int dv = hex_digit(h[i * 16 + c]);
        if (dv < 0) luaL_error(L, "%s: '%c' in the state string is not a hex digit", fn, h[i * 16 + c]);
        v = v << 4 | (uint64_t)dv;
      }
      s[i] = v;
    }
  } else if (lua_type(L, idx) == LUA_TTABLE) {
    if (lua_rawlen(L, idx) != 4) luaL_error(L, "%s: a state table has 4 integers, got %d entries", fn, (int)lua_rawlen(L, idx));
    for (int i = 0; i < 4; i++) {
      int ok = 0;
      lua_rawgeti(L, idx, i + 1);
      lua_Integer v = lua_tointegerx(L, -1, &ok);
      if (!ok) luaL_error(L, "%s: state entry %d must be an integer, got %s", fn, i + 1, luaL_typename(L, -1));
      s[i] = (uint64_t)v;
      lua_pop(L, 1);
    }
  } else {
    luaL_error(L, "%s: state must be a string of 64 hex digits or a table of 4 integers, got %s", fn,
               luaL_typename(L, idx));
  }
  if (!(s[0] | s[1] | s[2] | s[3])) luaL_error(L, "%s: the all-zero state is not valid", fn);
}

static int l_rng(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TTABLE) {
    uint64_t s[4];
    read_state(L, 1, "rng", s);
    memcpy(push_rng(L)->s, s, sizeof s);
    return 1;
  }
  int ok = 0;
  lua_Integer seed = lua_tointegerx(L, 1, &ok);
  if (!ok) luaL_error(L, "rng: argument 1 must be an integer seed or a state, got %s", luaL_typename(L, 1));
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
  read_state(L, 2, "set_state", s);
  memcpy(r->s, s, sizeof s);
  lua_settop(L, 1);
  return 1;
}

static int l_rng_seed(lua_State *L) {
  jbx_rng *r = check_rng(L, 1);
  jbx_rng_seed(r, (uint64_t)luaL_checkinteger(L, 2));
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
  lua_Integer n = luaL_checkinteger(L, 2);
  if (n < 1) return luaL_error(L, "rng:below: n must be at least 1, got %d", (int)n);
  lua_pushinteger(L, (lua_Integer)jbx_rng_below(r, (uint64_t)n));
  return 1;
}

static int l_rng_tostring(lua_State *L) {
  l_rng_state(L);
  lua_pushfstring(L, "Rng(%s)", lua_tostring(L, -1));
  return 1;
}

/* The generator an argument names: an Rng (used and advanced), an integer seed (a fresh
 * generator in *own) or nil (the default stream). */
static jbx_rng *rng_arg(lua_State *L, int idx, jbx_rng *own, const char *fn, const char *what) {
  if (lua_isnoneornil(L, idx)) return jbx_default_rng();
  jbx_rng *r = luaL_testudata(L, idx, LJ_RNG_MT);
  if (r) return r;
  int ok = 0;
  lua_Integer seed = lua_tointegerx(L, idx, &ok);
  if (!ok) luaL_error(L, "%s: %s must be an Rng or an integer seed, got %s", fn, what, luaL_typename(L, idx));
  jbx_rng_seed(own, (uint64_t)seed);
  return own;
}

/* ---- the bottleneck ---- */

static int l_vq_assign(lua_State *L) {
  jbx_tensor *x = lj_check_tensor(L, 1), *k = lj_check_tensor(L, 2), *codes, *md;
  if (jbx_vq_assign(x, k, &codes, &md) < 0) return lj_raise(L);
  lj_push_tensor(L, codes);
  lj_push_tensor(L, md);
  return 2;
}

static int l_vq_dequantise(lua_State *L) {
  jbx_tensor *k = lj_check_tensor(L, 1), *codes = lj_check_tensor(L, 2);
  return lj_push_tensor(L, jbx_vq_dequantise(k, codes));
}

static int l_vq_quantise(lua_State *L) {
  jbx_tensor *x = lj_check_tensor(L, 1), *k = lj_check_tensor(L, 2);
  jbx_vq_result r;
  if (jbx_vq_quantise(x, k, &r) < 0) return lj_raise(L);
  lj_push_tensor(L, r.codes);
  lj_push_tensor(L, r.x_q);
  lj_push_tensor(L, r.commit);
  lua_pushnumber(L, r.fit);
  return 4;
}

static int l_vq_prenorm(lua_State *L) {
  double pn;
  if (jbx_vq_prenorm(lj_check_tensor(L, 1), &pn) < 0) return lj_raise(L);
  lua_pushnumber(L, pn);
  return 1;
}

static int l_vq_init(lua_State *L) {
  jbx_tensor *k = lj_check_tensor(L, 1), *ks = lj_check_tensor(L, 2), *ke = lj_check_tensor(L, 3);
  jbx_tensor *x = lj_check_tensor(L, 4);
  jbx_rng own, *rng = rng_arg(L, 5, &own, "vq_init", "argument 5 (rng)");
  if (jbx_vq_init_from_data(k, ks, ke, x, rng) < 0) return lj_raise(L);
  return 0;
}

static int l_vq_ema_update(lua_State *L) {
  static const char *const known[] = {"mu", "threshold", "rng", "restart", NULL};
  jbx_tensor *k = lj_check_tensor(L, 1), *ks = lj_check_tensor(L, 2), *ke = lj_check_tensor(L, 3);
  jbx_tensor *x = lj_check_tensor(L, 4), *codes = lj_check_tensor(L, 5);
  double mu = 0.99, threshold = 1.0;
  bool restart = true;
  jbx_rng own, *rng = jbx_default_rng();
  if (!lua_isnoneornil(L, 6)) {
    if (lua_type(L, 6) != LUA_TTABLE)
      return luaL_error(L, "vq_ema_update: argument 6 (options) must be a table, got %s", luaL_typename(L, 6));
    lj_check_options(L, 6, "vq_ema_update", known);
    mu = lj_opt_num_field(L, 6, "mu", mu);
    threshold = lj_opt_num_field(L, 6, "threshold", threshold);
    lua_getfield(L, 6, "rng");
    rng = rng_arg(L, lua_gettop(L), &own, "vq_ema_update", "option 'rng'");
    lua_pop(L, 1);
    if (lua_getfield(L, 6, "restart") != LUA_TNIL) {
      if (!lua_isboolean(L, -1))
        return luaL_error(L, "vq_ema_update: option 'restart' must be a boolean, got %s", luaL_typename(L, -1));
      restart = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
  }
  jbx_vq_metrics m;
  if (jbx_vq_ema_update_ex(k, ks, ke, x, codes, mu, threshold, restart, rng, &m) < 0) return lj_raise(L);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)m.usage);
  lua_setfield(L, -2, "usage");
  lua_pushinteger(L, (lua_Integer)m.used_curr);
  lua_setfield(L, -2, "used_curr");
  lua_pushnumber(L, m.entropy);
  lua_setfield(L, -2, "entropy");
  lua_pushnumber(L, m.dk);
  lua_setfield(L, -2, "dk");
  lua_pushnumber(L, m.fit);
  lua_setfield(L, -2, "fit");
  lua_pushnumber(L, m.pn);
  lua_setfield(L, -2, "pn");
  return 1;
}

void lj_open_vq(lua_State *L) {
  static const luaL_Reg rng_methods[] = {
      {"state", l_rng_state},     {"set_state", l_rng_set_state}, {"seed", l_rng_seed},
      {"clone", l_rng_clone},     {"uniform", l_rng_uniform},     {"normal", l_rng_normal}, {"below", l_rng_below},
      {NULL, NULL},
  };
  static const luaL_Reg fns[] = {
      {"rng", l_rng},
      {"vq_assign", l_vq_assign},
      {"vq_dequantise", l_vq_dequantise},
      {"vq_quantise", l_vq_quantise},
      {"vq_prenorm", l_vq_prenorm},
      {"vq_init", l_vq_init},
      {"vq_ema_update", l_vq_ema_update},
      {NULL, NULL},
  };
  if (luaL_newmetatable(L, LJ_RNG_MT)) {
    luaL_newlib(L, rng_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_rng_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, fns, 0);
}
