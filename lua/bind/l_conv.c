/* Lua binding of the convolutions:
 *   conv1d(x, w, bias_or_nil, {stride = 1, padding = 0, dilation = 1})
 *   conv_transpose1d(x, w, bias_or_nil, {stride = 1, padding = 0, output_padding = 0})
 * The options table may be omitted; an unknown key is an error.
 *   res_conv_block(x, w3, b3_or_nil, w1, b1_or_nil, dilation, {recompute = true}): Resnet1D's
 *   residual block x + conv1d(relu(conv1d(relu(x), w3, b3, padding = dilation, dilation)),
 *   w1, b1), fused; recompute = false keeps its hidden activation for a faster backward. */
#include <limits.h>

#include "jbx_resblock.h"
#include "lj.h"

/* Integer option `key` of the table at idx (absent: dflt), checked to fit a C int. */
static int opt_int(lua_State *L, int idx, const char *fn, const char *key, int dflt) {
  lua_Integer v = lj_opt_int_field(L, idx, key, dflt);
  if (v < INT_MIN || v > INT_MAX)
    return luaL_error(L, "%s: option '%s' = %I is out of range", fn, key, v);
  return (int)v;
}

static int l_conv1d(lua_State *L) {
  static const char *const known[] = {"stride", "padding", "dilation", NULL};
  jbx_tensor *x = lj_check_tensor(L, 1), *w = lj_check_tensor(L, 2), *b = lj_opt_tensor(L, 3);
  int stride = 1, padding = 0, dilation = 1;
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    lj_check_options(L, 4, "conv1d", known);
    stride = opt_int(L, 4, "conv1d", "stride", 1);
    padding = opt_int(L, 4, "conv1d", "padding", 0);
    dilation = opt_int(L, 4, "conv1d", "dilation", 1);
  }
  return lj_push_tensor(L, jbx_conv1d(x, w, b, stride, padding, dilation));
}

static int l_conv_transpose1d(lua_State *L) {
  static const char *const known[] = {"stride", "padding", "output_padding", NULL};
  jbx_tensor *x = lj_check_tensor(L, 1), *w = lj_check_tensor(L, 2), *b = lj_opt_tensor(L, 3);
  int stride = 1, padding = 0, output_padding = 0;
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    lj_check_options(L, 4, "conv_transpose1d", known);
    stride = opt_int(L, 4, "conv_transpose1d", "stride", 1);
    padding = opt_int(L, 4, "conv_transpose1d", "padding", 0);
    output_padding = opt_int(L, 4, "conv_transpose1d", "output_padding", 0);
  }
  return lj_push_tensor(L, jbx_conv_transpose1d(x, w, b, stride, padding, output_padding));
}

static int l_res_conv_block(lua_State *L) {
  static const char *const known[] = {"recompute", NULL};
  jbx_tensor *x = lj_check_tensor(L, 1), *w3 = lj_check_tensor(L, 2), *b3 = lj_opt_tensor(L, 3);
  jbx_tensor *w1 = lj_check_tensor(L, 4), *b1 = lj_opt_tensor(L, 5);
  lua_Integer d = luaL_checkinteger(L, 6);
  if (d < INT_MIN || d > INT_MAX)
    return luaL_error(L, "res_conv_block: dilation %I is out of range", d);
  bool recompute = true;
  if (!lua_isnoneornil(L, 7)) {
    luaL_checktype(L, 7, LUA_TTABLE);
    lj_check_options(L, 7, "res_conv_block", known);
    int t = lua_getfield(L, 7, "recompute");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
      return luaL_error(L, "res_conv_block: option 'recompute' must be a boolean, got %s",
                        luaL_typename(L, -1));
    if (t == LUA_TBOOLEAN) recompute = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  return lj_push_tensor(L, jbx_res_conv_block_ex(x, w3, b3, w1, b1, (int)d, recompute));
}

void lj_open_conv(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"conv1d", l_conv1d},
      {"conv_transpose1d", l_conv_transpose1d},
      {"res_conv_block", l_res_conv_block},
      {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
}
