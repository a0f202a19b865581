/* The C module `jukebox.core`: one table holding every bound room of the core. */
#include "lj.h"

int luaopen_jukebox_core(lua_State *L) {
  jbx_set_message_base(1); /* core messages count dims and positions as Lua users do */
  lua_newtable(L);
  lj_open_runtime(L);
  lj_open_tensor(L);
  lj_open_audio(L);
  lj_open_safetensors(L);
  lj_open_json(L);
  lj_open_conv(L);
  lj_open_stft(L);
  lj_open_rng(L);
  lj_open_vq(L);
  lj_open_attention(L);
  lj_open_sampler(L);
  lj_open_recompute(L);
  lj_open_optim(L);
  lj_open_param_arena(L);
  lj_open_dist(L);
  lj_open_fs(L);
  lua_pushstring(L, JBX_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
