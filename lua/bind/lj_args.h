/* The binding's one dialect: argument, option and error helpers, and registration.
 *
 * Every bound C function is a closure whose upvalue 1 is its Lua-visible name ("conv1d",
 * "audio.load", "rng:below"), set by lj_register / lj_setfuncs; the helpers read it, so
 * every message has the form
 *     NAME: argument N (WHAT) must be EXPECTED, got ACTUAL
 *     NAME: option 'KEY' must be EXPECTED, got ACTUAL
 * Errors are raised on the failure path only: the helpers cost nothing extra per call. */
#ifndef JBX_LJ_ARGS_H
#define JBX_LJ_ARGS_H
#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "jbx_tensor.h"

#define LJ_TENSOR_MT "jbx.Tensor"

/* ---- errors ---- */

/* Raises a printf-formatted message (C formats, unlike luaL_error); never returns. */
int lj_error(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Raises jbx_last_error() (the core words its own failures); never returns. */
int lj_raise(lua_State *L);
/* The running function's name: its name upvalue, else what debug info says, else "?". */
const char *lj_fn_name(lua_State *L);
/* A readable type name of the value at idx: "tensor", __name for other userdata, "no value". */
const char *lj_typename(lua_State *L, int idx);
/* Raises "fn: argument idx (what) must be EXPECTED, got <value or type>". */
int lj_arg_error(lua_State *L, int idx, const char *what, const char *expected);
/* Makes room for n more stack slots or raises "fn: <why> (out of Lua stack)". */
void lj_check_stack(lua_State *L, int n, const char *why);

/* ---- tensors ---- */

bool lj_is_tensor(lua_State *L, int idx);
/* The tensor at idx, borrowed (the userdata keeps it alive). */
jbx_tensor *lj_tensor(lua_State *L, int idx, const char *what);
jbx_tensor *lj_opt_tensor(lua_State *L, int idx, const char *what); /* NULL for nil/none */
/* A tensor or a number at idx; a number becomes a 0-dim tensor (int32 when `like` is int32
 * and the number an integer) that replaces it on the stack, so the result is borrowed. */
jbx_tensor *lj_tensor_or_number(lua_State *L, int idx, const char *what, const jbx_tensor *like);
/* Pushes t as userdata taking its reference; when t is NULL raises jbx_last_error().
 * (Defined with the userdata in l_tensor.c.) */
int lj_push_tensor(lua_State *L, jbx_tensor *t);

/* ---- plain values ---- */

lua_Integer lj_int(lua_State *L, int idx, const char *what);
/* An integer in lo..hi; the message says ">= lo" when hi is LUA_MAXINTEGER. */
lua_Integer lj_int_in(lua_State *L, int idx, const char *what, lua_Integer lo, lua_Integer hi);
lua_Integer lj_opt_int_in(lua_State *L, int idx, const char *what, lua_Integer lo, lua_Integer hi,
                          lua_Integer dflt);
double lj_num(lua_State *L, int idx, const char *what);
double lj_opt_num(lua_State *L, int idx, const char *what, double dflt);
bool lj_bool(lua_State *L, int idx, const char *what);
bool lj_opt_bool(lua_State *L, int idx, const char *what, bool dflt);
const char *lj_string(lua_State *L, int idx, const char *what, size_t *len);
void lj_table(lua_State *L, int idx, const char *what); /* a plain table (not a tensor) */
void lj_function(lua_State *L, int idx, const char *what);

/* ---- dims, positions, shapes: Lua numbering (1-based, negative from the end) in, C out ---- */

/* A dim at idx (or the value d) as a 0-based C dim, with a range error in Lua numbering. */
int lj_dim(lua_State *L, int idx, const jbx_tensor *t);
int lj_dim_value(lua_State *L, lua_Integer d, const jbx_tensor *t);
/* A 1-based position at idx along a dim of `size` (negative from the end) as a 0-based
 * offset; past_end also accepts size + 1 (an empty narrow at the end). Only the numbering
 * is checked here: what the position means is the core's business. */
int64_t lj_position(lua_State *L, int idx, const char *what, int64_t size, bool past_end);
/* A shape given as a table {2, 3} or as numbers 2, 3 from idx; returns ndim and sets *next
 * (if given) to the first argument after it. allow_infer accepts -1 sizes (view, expand). */
int lj_shape_args(lua_State *L, int idx, int64_t *shape, int *next, bool allow_infer);

/* ---- options tables ---- */

/* False for nil/none; raises unless idx holds a plain table. */
bool lj_opts(lua_State *L, int idx);
/* Raises "fn: unknown option 'k' (known: a, b, c)" for any other key. */
void lj_check_options(lua_State *L, int idx, const char *const *known);
lua_Integer lj_opt_int_field(lua_State *L, int idx, const char *key, lua_Integer dflt);
/* An integer option that must lie in lo..hi (e.g. fit a C int). */
lua_Integer lj_opt_int_field_in(lua_State *L, int idx, const char *key, lua_Integer lo, lua_Integer hi,
                                lua_Integer dflt);
double lj_opt_num_field(lua_State *L, int idx, const char *key, double dflt);
bool lj_opt_bool_field(lua_State *L, int idx, const char *key, bool dflt);
/* True when the options table at idx has a non-nil `key`. */
bool lj_opt_has(lua_State *L, int idx, const char *key);

/* ---- registration: every closure carries its name (upvalue 1) ---- */

/* Sets each function on the table at the top, named prefix..name ("audio." -> "audio.load"). */
void lj_setfuncs(lua_State *L, const luaL_Reg *regs, const char *prefix);
/* Registers metatable `mt` whose __gc frees what a userdata of that type owns (C memory
 * held this way is never leaked by a Lua error). */
void lj_gc_type(lua_State *L, const char *mt, lua_CFunction gc);
/* Pushes fn as a closure named `name`, with `extra` more upvalues taken from the stack top. */
void lj_push_named(lua_State *L, lua_CFunction fn, const char *name, int extra);

#endif
