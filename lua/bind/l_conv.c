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
static int opt_int(lua_State *L, int idx, const char *key, int dflt) {
  return (int)lj_opt_int_field_in(L, idx, key, INT_MIN, INT_MAX, dflt);
}

static int l_conv1d(lua_State *L) {
  static const char *const known[] = {"stride", "padding", "dilation", NULL};
  jbx_tensor *x = lj_tensor(L, 1, "input"), *w = lj_tensor(L, 2, "weight"), *b = lj_opt_tensor(L, 3, "bias");
  lj_check_options(L, 4, known);
  int stride = opt_int(L, 4, "stride", 1), padding = opt_int(L, 4, "padding", 0);
  int dilation = opt_int(L, 4, "dilation", 1);
  return lj_push_tensor(L, jbx_conv1d(x, w, b, stride, padding, dilation));
}

static int l_conv_transpose1d(lua_State *L) {
  static const char *const known[] = {"stride", "padding", "output_padding", NULL};
  jbx_tensor *x = lj_tensor(L, 1, "input"), *w = lj_tensor(L, 2, "weight"), *b = lj_opt_tensor(L, 3, "bias");
  lj_check_options(L, 4, known);
  int stride = opt_int(L, 4, "stride", 1), padding = opt_int(L, 4, "padding", 0);
  int output_padding = opt_int(L, 4, "output_padding", 0);
  return lj_push_tensor(L, jbx_conv_transpose1d(x, w, b, stride, padding, output_padding));
}

static int l_res_conv_block(lua_State *L) {
  static const char *const known[] = {"recompute", NULL};
  jbx_tensor *x = lj_tensor(L, 1, "input"), *w3 = lj_tensor(L, 2, "weight3"), *b3 = lj_opt_tensor(L, 3, "bias3");
  jbx_tensor *w1 = lj_tensor(L, 4, "weight1"), *b1 = lj_opt_tensor(L, 5, "bias1");
  int d = (int)lj_int_in(L, 6, "dilation", INT_MIN, INT_MAX);
  lj_check_options(L, 7, known);
  bool recompute = lj_opt_bool_field(L, 7, "recompute", true);
  return lj_push_tensor(L, jbx_res_conv_block_ex(x, w3, b3, w1, b1, d, recompute));
}

void lj_open_conv(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"conv1d", l_conv1d},
      {"conv_transpose1d", l_conv_transpose1d},
      {"res_conv_block", l_res_conv_block},
      {NULL, NULL},
  };
  lj_setfuncs(L, fns, "");
}
