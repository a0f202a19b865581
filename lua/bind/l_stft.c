/* Lua binding of the STFT room (core/ops/stft.c):
 *   stft_mag(x, n_fft [, hop = n_fft // 4 [, win = n_fft]])  -> |STFT| [B, bins, frames]
 *   stft(x, n_fft [, hop [, win]])                            -> [B, bins, frames, 2]
 *   istft(spec, n_fft [, hop [, win [, length]]])             -> [B, length]
 *   mel_filterbank(n_fft, rate, n_mels [, fmin = 0 [, fmax = rate / 2]]) -> [n_mels, bins]
 *   stft_window(n_fft [, win = n_fft])                        -> [n_fft] padded Hann
 * Defaults for hop and win are torch.stft's. */
#include <limits.h>

#include "jbx_stft.h"
#include "lj.h"

static int check_int(lua_State *L, int idx) {
  lua_Integer v = luaL_checkinteger(L, idx);
  if (v < INT_MIN || v > INT_MAX) luaL_argerror(L, idx, "integer out of range");
  return (int)v;
}

static int opt_int(lua_State *L, int idx, int dflt) {
  return lua_isnoneornil(L, idx) ? dflt : check_int(L, idx);
}

static int l_stft_mag(lua_State *L) {
  jbx_tensor *x = lj_check_tensor(L, 1);
  int n_fft = check_int(L, 2);
  int hop = opt_int(L, 3, n_fft / 4), win = opt_int(L, 4, n_fft);
  return lj_push_tensor(L, jbx_stft_mag(x, n_fft, hop, win));
}

static int l_stft(lua_State *L) {
  jbx_tensor *x = lj_check_tensor(L, 1);
  int n_fft = check_int(L, 2);
  int hop = opt_int(L, 3, n_fft / 4), win = opt_int(L, 4, n_fft);
  return lj_push_tensor(L, jbx_stft(x, n_fft, hop, win));
}

static int l_istft(lua_State *L) {
  jbx_tensor *spec = lj_check_tensor(L, 1);
  int n_fft = check_int(L, 2);
  int hop = opt_int(L, 3, n_fft / 4), win = opt_int(L, 4, n_fft);
  lua_Integer length = luaL_optinteger(L, 5, 0);
  if (!lua_isnoneornil(L, 5) && length < 1) luaL_argerror(L, 5, "length must be >= 1");
  return lj_push_tensor(L, jbx_istft(spec, n_fft, hop, win, (int64_t)length));
}

static int l_mel_filterbank(lua_State *L) {
  int n_fft = check_int(L, 1), rate = check_int(L, 2), n_mels = check_int(L, 3);
  double fmin = luaL_optnumber(L, 4, 0.0), fmax = luaL_optnumber(L, 5, 0.0);
  if (!lua_isnoneornil(L, 5) && !(fmax > 0.0)) luaL_argerror(L, 5, "fmax must be > 0");
  return lj_push_tensor(L, jbx_mel_filterbank(n_fft, rate, n_mels, (float)fmin, (float)fmax));
}

static int l_stft_window(lua_State *L) {
  int n_fft = check_int(L, 1);
  return lj_push_tensor(L, jbx_stft_window(n_fft, opt_int(L, 2, n_fft)));
}

void lj_open_stft(lua_State *L) {
  static const luaL_Reg fns[] = {{"stft_mag", l_stft_mag},
                                 {"stft", l_stft},
                                 {"istft", l_istft},
                                 {"mel_filterbank", l_mel_filterbank},
                                 {"stft_window", l_stft_window},
                                 {NULL, NULL}};
  /* the name as upvalue 1 lets the tensor helpers name the function in argument errors */
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushstring(L, f->name);
    lua_pushcclosure(L, f->func, 1);
    lua_setfield(L, -2, f->name);
  }
}
