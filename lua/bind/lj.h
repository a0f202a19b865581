/* The Lua side of the binding: tensors as userdata, errors as Lua errors.
 * Every room of the core registers its functions through one lj_open_<room>; every
 * argument is read through the one dialect of lj_args.h. */
#ifndef JBX_LJ_H
#define JBX_LJ_H
#include <lauxlib.h>
#include <lua.h>

#include "jbx_error.h"
#include "jbx_ops.h"
#include "jbx_tensor.h"
#include "lj_args.h"

/* Each adds its functions to the table on top of the stack. */
void lj_open_tensor(lua_State *L);      /* l_tensor.c (+ l_tensor_ops.c): tensors, ops, methods */
void lj_open_audio(lua_State *L);       /* l_audio.c */
void lj_open_safetensors(lua_State *L); /* l_safetensors.c */
void lj_open_json(lua_State *L);        /* l_json.c */
void lj_open_conv(lua_State *L);        /* l_conv.c */
void lj_open_stft(lua_State *L);        /* l_stft.c */
void lj_open_rng(lua_State *L);         /* l_rng.c */
void lj_open_vq(lua_State *L);          /* l_vq.c */
void lj_open_attention(lua_State *L);   /* l_attention.c: factorised attention */
void lj_open_sampler(lua_State *L);     /* l_sampler.c: KV-cached sampling of a prior */
void lj_open_recompute(lua_State *L);  /* l_recompute.c: recompute in the backward */
void lj_open_optim(lua_State *L);       /* l_optim.c */
void lj_open_param_arena(lua_State *L); /* l_param_arena.c: flat parameter and gradient arenas */
void lj_open_dist(lua_State *L);        /* l_dist.c: core.dist, data parallelism over MPI */
void lj_open_fs(lua_State *L);          /* l_fs.c: directories, atomic writes */
void lj_open_runtime(lua_State *L);     /* l_runtime.c: clock, threads, Ctrl-C, memory policy */

/* The generator an argument names (l_rng.c): an Rng userdata (used and advanced), an
 * integer seed (a fresh generator in *own) or nil (the default stream). `what` names the
 * argument or option in the error. */
struct jbx_rng;
struct jbx_rng *lj_rng_arg(lua_State *L, int idx, struct jbx_rng *own, const char *what);

/* Pushes the Lua value of the JSON text s (l_json.c); errors say fn and the position. */
void lj_json_push(lua_State *L, const char *fn, const char *s, size_t len);

/* Sets the Lua thread that runs recomputed forwards (l_recompute.c); returns the previous
 * one. tensor:backward sets it for the length of the pass. */
lua_State *lj_set_running(lua_State *L);

/* Memory policy (l_runtime.c): reports bytes Lua cannot see to its GC, so loops that make
 * tensors stay bounded in memory. Called for every new tensor: no allocation. */
void lj_gc_account(lua_State *L, size_t bytes);

/* luaopen_jukebox_core: the module table with every room (module.c). */
int luaopen_jukebox_core(lua_State *L);
#endif
