/* Optimiser kernels for lua/jukebox/optim.lua. */
#include "jbx_optim.h"
#include "lj.h"

/* adam_step(p, m, v, {lr=, beta1=, beta2=, eps=, weight_decay=, step=, grad_scale=}) */
static int l_adam_step(lua_State *L) {
  jbx_tensor *p = lj_tensor(L, 1, "param"), *m = lj_tensor(L, 2, "m"), *v = lj_tensor(L, 3, "v");
  lj_table(L, 4, "options");
  static const char *const known[] = {"lr", "beta1", "beta2", "eps", "weight_decay", "step", "grad_scale", NULL};
  lj_check_options(L, 4, known);
  jbx_adam_opts o = {
      .lr = (float)lj_opt_num_field(L, 4, "lr", 3e-4),
      .beta1 = (float)lj_opt_num_field(L, 4, "beta1", 0.9),
      .beta2 = (float)lj_opt_num_field(L, 4, "beta2", 0.999),
      .eps = (float)lj_opt_num_field(L, 4, "eps", 1e-8),
      .weight_decay = (float)lj_opt_num_field(L, 4, "weight_decay", 0),
      .step = lj_opt_int_field(L, 4, "step", 1),
      .grad_scale = (float)lj_opt_num_field(L, 4, "grad_scale", 1),
  };
  if (jbx_adam_step(p, m, v, &o) < 0) return lj_raise(L);
  return 0;
}

static int l_grad_sumsq(lua_State *L) {
  lua_pushnumber(L, jbx_grad_sumsq(lj_tensor(L, 1, "param")));
  return 1;
}

static int l_ema_update(lua_State *L) {
  jbx_tensor *e = lj_tensor(L, 1, "ema"), *p = lj_tensor(L, 2, "param");
  if (jbx_ema_update(e, p, (float)lj_num(L, 3, "decay")) < 0) return lj_raise(L);
  return 0;
}

void lj_open_optim(lua_State *L) {
  static const luaL_Reg fns[] = {{"adam_step", l_adam_step},
                                 {"grad_sumsq", l_grad_sumsq},
                                 {"ema_update", l_ema_update},
                                 {NULL, NULL}};
  lj_setfuncs(L, fns, "");
}
