/* Lua binding of factorised attention (core/include/jbx_attention.h):
 *   attention(q, k, v [, {attn_func = 0, block_ctx = N}]) -> out [B, H, T, d]
 * q, k, v float32 [B, H, T, d] of one shape, differentiable in each. attn_func as the
 * reference numbers it: 0 dense, 1 block ("row"), 2 transposed block ("column"), 3
 * previous block; block_ctx (n_ctx / blocks) is required by 1-3, and T must be a
 * multiple of it. */
#include <limits.h>

#include "jbx_attention.h"
#include "lj.h"

static int l_attention(lua_State *L) {
  static const char *const known[] = {"attn_func", "block_ctx", NULL};
  jbx_tensor *q = lj_tensor(L, 1, "q"), *k = lj_tensor(L, 2, "k"), *v = lj_tensor(L, 3, "v");
  lj_check_options(L, 4, known);
  jbx_attn_opts o = {
      .attn_func = (int)lj_opt_int_field_in(L, 4, "attn_func", INT_MIN, INT_MAX, JBX_ATTN_DENSE),
      .block_ctx = (int64_t)lj_opt_int_field_in(L, 4, "block_ctx", 1, LUA_MAXINTEGER, 0),
  };
  if (o.block_ctx == 0 && o.attn_func >= JBX_ATTN_BLOCK && o.attn_func <= JBX_ATTN_PREV_BLOCK)
    return lj_error(L, "%s: option 'block_ctx' is required for attn_func %d", lj_fn_name(L),
                    o.attn_func);
  return lj_push_tensor(L, jbx_attention(q, k, v, &o));
}

void lj_open_attention(lua_State *L) {
  static const luaL_Reg fns[] = {{"attention", l_attention}, {NULL, NULL}};
  lj_setfuncs(L, fns, "");
}
