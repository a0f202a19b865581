/* Lua binding of the VQ bottleneck (core/include/jbx_vq.h); dead codes restart from a
 * generator given as an Rng (l_rng.c) or a seed:
 *   vq_assign(x, k) -> codes (int32 [N], 0-based ids), min_dist [N]
 *   vq_dequantise(k, codes) -> [..., D]          (differentiable in k)
 *   vq_quantise(x, k) -> codes, x_q, commit, fit (x_q straight-through, commit loss)
 *   vq_prenorm(x) -> pn
 *   vq_init(k, k_sum, k_elem, x [, rng | seed [, {across = false}]])
 *   vq_ema_update(k, k_sum, k_elem, x, codes [, {mu = 0.99, threshold = 1.0, rng = Rng | seed,
 *                 restart = true, across = false}])
 *     -> {usage =, used_curr =, entropy =, dk =, fit =, pn =}
 *     restart = false: codes below the threshold are not restarted from x (no rng draws).
 *     across = true: x is this process's part of a batch spread over the processes of a
 *     data-parallel run (core.dist); every process must call, and all get the update
 *     of the whole batch (jbx_vq_init_across, jbx_vq_ema_update_across).
 * Without an rng, vq_init and vq_ema_update draw from the default stream (manual_seed). */
#include <stdbool.h>
#include "jbx_rng.h"
#include "jbx_vq.h"
#include "lj.h"

/* ---- the bottleneck ---- */

static int l_vq_assign(lua_State *L) {
  jbx_tensor *x = lj_tensor(L, 1, "x"), *k = lj_tensor(L, 2, "codebook"), *codes, *md;
  if (jbx_vq_assign(x, k, &codes, &md) < 0) return lj_raise(L);
  lj_push_tensor(L, codes);
  lj_push_tensor(L, md);
  return 2;
}

static int l_vq_dequantise(lua_State *L) {
  jbx_tensor *k = lj_tensor(L, 1, "codebook"), *codes = lj_tensor(L, 2, "codes");
  return lj_push_tensor(L, jbx_vq_dequantise(k, codes));
}

static int l_vq_quantise(lua_State *L) {
  jbx_tensor *x = lj_tensor(L, 1, "x"), *k = lj_tensor(L, 2, "codebook");
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
  if (jbx_vq_prenorm(lj_tensor(L, 1, "x"), &pn) < 0) return lj_raise(L);
  lua_pushnumber(L, pn);
  return 1;
}

static int l_vq_init(lua_State *L) {
  jbx_tensor *k = lj_tensor(L, 1, "codebook"), *ks = lj_tensor(L, 2, "k_sum"), *ke = lj_tensor(L, 3, "k_elem");
  jbx_tensor *x = lj_tensor(L, 4, "x");
  jbx_rng own, *rng = lj_rng_arg(L, 5, &own, "argument 5 (rng)");
  static const char *const known[] = {"across", NULL};
  lj_check_options(L, 6, known);
  bool across = lj_opt_bool_field(L, 6, "across", false);
  if ((across ? jbx_vq_init_across : jbx_vq_init_from_data)(k, ks, ke, x, rng) < 0) return lj_raise(L);
  return 0;
}

static int l_vq_ema_update(lua_State *L) {
  static const char *const known[] = {"mu", "threshold", "rng", "restart", "across", NULL};
  jbx_tensor *k = lj_tensor(L, 1, "codebook"), *ks = lj_tensor(L, 2, "k_sum"), *ke = lj_tensor(L, 3, "k_elem");
  jbx_tensor *x = lj_tensor(L, 4, "x"), *codes = lj_tensor(L, 5, "codes");
  lj_check_options(L, 6, known);
  double mu = lj_opt_num_field(L, 6, "mu", 0.99), threshold = lj_opt_num_field(L, 6, "threshold", 1.0);
  bool restart = lj_opt_bool_field(L, 6, "restart", true), across = lj_opt_bool_field(L, 6, "across", false);
  jbx_rng own, *rng = jbx_default_rng();
  if (lj_opt_has(L, 6, "rng")) {
    lua_getfield(L, 6, "rng");
    rng = lj_rng_arg(L, lua_gettop(L), &own, "option 'rng'");
    lua_pop(L, 1);
  }
  jbx_vq_metrics m;
  if ((across ? jbx_vq_ema_update_across : jbx_vq_ema_update_ex)(k, ks, ke, x, codes, mu, threshold, restart, rng,
                                                                  &m) < 0)
    return lj_raise(L);
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
  static const luaL_Reg fns[] = {
      {"vq_assign", l_vq_assign},   {"vq_dequantise", l_vq_dequantise}, {"vq_quantise", l_vq_quantise},
      {"vq_prenorm", l_vq_prenorm}, {"vq_init", l_vq_init},             {"vq_ema_update", l_vq_ema_update},
      {NULL, NULL},
  };
  lj_setfuncs(L, fns, "");
}
