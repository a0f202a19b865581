/* Internals shared by the tensor binding files (l_tensor.c, l_tensor_ops.c).
 * Conventions of the Lua API (see the top of l_tensor.c): dims are 1-based (negative
 * counts from the end), indices and codes held in tensors stay 0-based. */
#ifndef JBX_LJ_TENSOR_H
#define JBX_LJ_TENSOR_H
#include <stdbool.h>

#include "lj.h"

/* The userdata: a box holding one reference; NULL after __close. */
typedef struct {
  jbx_tensor *t;
} lj_box;

/* Where a registered function goes: the module table, the methods table, or both. */
enum { LJ_FUNC = 1, LJ_METHOD = 2, LJ_BOTH = 3 };

/* Registers the op table of l_tensor_ops.c into the module table, the methods table and
 * the tensor metatable (arithmetic metamethods). */
void lj_open_tensor_ops(lua_State *L, int mod, int meth, int mt);

/* Sets requires_grad with the binding's checks (float32, leaf). */
void lj_set_requires_grad(lua_State *L, jbx_tensor *t, bool on);

#endif
