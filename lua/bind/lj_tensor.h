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
} ljt_box;

/* Where a registered function goes: the module table, the methods table, or both. */
enum { LJT_FUNC = 1, LJT_METHOD = 2, LJT_BOTH = 3 };
typedef struct {
  const char *name;
  lua_CFunction fn;
  int where;
} ljt_reg;

/* Registers each entry as a closure whose upvalue 1 is its name (for error messages). */
void ljt_register(lua_State *L, int mod, int meth, const ljt_reg *regs);
/* The op tables of l_tensor_ops.c. */
extern const ljt_reg ljt_op_regs[];

/* Raises a printf-formatted message (C formats, unlike luaL_error); never returns. */
int ljt_error(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Name of the running C function: its name upvalue, else what debug info says. */
const char *ljt_fn_name(lua_State *L);
/* A readable type name: "tensor" for ours, __name for other userdata. */
const char *ljt_typename(lua_State *L, int idx);

/* The tensor at idx (borrowed), or "fn: argument N must be a tensor, got T". */
jbx_tensor *ljt_check(lua_State *L, int idx, const char *fn);
jbx_tensor *ljt_opt(lua_State *L, int idx, const char *fn); /* NULL for nil/none */
/* Tensor or number at idx; a number becomes a 0-dim tensor (int32 when `like` is int32 and
 * the number an integer) that replaces it on the stack, so the result is always borrowed. */
jbx_tensor *ljt_check_tn(lua_State *L, int idx, const char *fn, const jbx_tensor *like);
/* True when the value at idx is a tensor userdata (open or closed). */
bool ljt_is_tensor(lua_State *L, int idx);

/* A 1-based Lua dim (negative from the end) at idx as a 0-based C dim, range-checked. */
int ljt_dim(lua_State *L, int idx, const jbx_tensor *t, const char *fn);
int ljt_dim_value(lua_State *L, lua_Integer d, const jbx_tensor *t, const char *fn);
/* Integer / number / boolean arguments with "fn: argument N (what) must be ..." errors. */
lua_Integer ljt_int(lua_State *L, int idx, const char *fn, const char *what);
double ljt_num(lua_State *L, int idx, const char *fn, const char *what);
bool ljt_opt_bool(lua_State *L, int idx, const char *fn, const char *what, bool dflt);
/* A shape given as a table {2, 3} or as numbers 2, 3 starting at idx; returns ndim and sets
 * *next to the first argument after it. allow_infer accepts -1 sizes (view, expand). */
int ljt_shape_args(lua_State *L, int idx, const char *fn, int64_t *shape, int *next,
                   bool allow_infer);
/* Boolean option `key` of the table at idx (nil/none table or absent key: dflt). */
bool ljt_opt_bool_field(lua_State *L, int idx, const char *fn, const char *key, bool dflt);

/* Sets requires_grad with the binding's checks (float32, leaf). */
void ljt_set_requires_grad(lua_State *L, jbx_tensor *t, bool on, const char *fn);

#endif
