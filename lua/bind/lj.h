/* The Lua side of the binding: tensors as userdata, errors as Lua errors.
 * Every room of the core registers its functions through one lj_open_<room>. */
#ifndef JBX_LJ_H
#define JBX_LJ_H
#include <lauxlib.h>
#include <lua.h>
#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_tensor.h"

#define LJ_TENSOR_MT "jbx.Tensor"

/* The tensor at idx (borrowed); raises "fn: argument N must be a tensor, got T". */
jbx_tensor *lj_check_tensor(lua_State *L, int idx);
/* A tensor or NULL when idx is nil/none. */
jbx_tensor *lj_opt_tensor(lua_State *L, int idx);
/* The tensor at idx, or a new 0-dim tensor from a number: returns a new reference. */
jbx_tensor *lj_tensor_or_number(lua_State *L, int idx);
/* Pushes t as userdata taking its reference; when t is NULL raises jbx_last_error(). */
int lj_push_tensor(lua_State *L, jbx_tensor *t);
/* Raises jbx_last_error() as a Lua error (never returns). */
int lj_raise(lua_State *L);
/* Reads integer field `key` of the options table at idx (absent: dflt). */
lua_Integer lj_opt_int_field(lua_State *L, int idx, const char *key, lua_Integer dflt);
double lj_opt_num_field(lua_State *L, int idx, const char *key, double dflt);
/* Raises "fn: unknown option 'k' (known: a, b, c)" when the table at idx has another key. */
void lj_check_options(lua_State *L, int idx, const char *fn, const char *const *known);

/* Each adds its functions to the table on top of the stack. */
void lj_open_tensor(lua_State *L); /* l_tensor.c: creation, ops, methods, metatable */
void lj_open_audio(lua_State *L);  /* l_audio.c */
void lj_open_io(lua_State *L);     /* l_io.c: safetensors, json */
void lj_open_conv(lua_State *L);   /* l_conv.c */
void lj_open_stft(lua_State *L);   /* l_stft.c */
void lj_open_vq(lua_State *L);     /* l_vq.c */
void lj_open_optim(lua_State *L);  /* l_optim.c */
void lj_open_fs(lua_State *L);     /* l_fs.c: files, clock, threads, deferred Ctrl-C */

/* luaopen_jukebox_core: the module table with every room (module.c). */
int luaopen_jukebox_core(lua_State *L);
#endif
