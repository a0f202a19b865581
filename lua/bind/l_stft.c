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

/* A size argument (n_fft, hop, win, rate, n_mels): an integer that fits a C int; the
 * core checks the values and how they relate to each other. */
static int size_arg(lua_State *L, int idx, const char *what) { return (int)lj_int_in(L, idx, what, INT_MIN, INT_MAX); }

static int opt_size(lua_State *L, int idx, const char *what, int dflt) {
  return lua_isnoneornil(L, idx) ? dflt : size_arg(L, idx, what);
}

static int l_stft_mag(lua_State *L) {
  jbx_tensor *x = lj_tensor(L, 1, "input");
  int n_fft = size_arg(L, 2, "n_fft");
  int hop = opt_size(L, 3, "hop", n_fft / 4), win = opt_size(L, 4, "win", n_fft);
  return lj_push_tensor(L, jbx_stft_mag(x, n_fft, hop, win));
}

static int l_stft(lua_State *L) {
  jbx_tensor *x = lj_tensor(L, 1, "input");
  int n_fft = size_arg(L, 2, "n_fft");
  int hop = opt_size(L, 3, "hop", n_fft / 4), win = opt_size(L, 4, "win", n_fft);
  return lj_push_tensor(L, jbx_stft(x, n_fft, hop, win));
}

static int l_istft(lua_State *L) {
  jbx_tensor *spec = lj_tensor(L, 1, "spec");
  int n_fft = size_arg(L, 2, "n_fft");
  int hop = opt_size(L, 3, "hop", n_fft / 4), win = opt_size(L, 4, "win", n_fft);
  lua_Integer length = lj_opt_int_in(L, 5, "length", 1, LUA_MAXINTEGER, 0);
  return lj_push_tensor(L, jbx_istft(spec, n_fft, hop, win, (int64_t)length));
}

static int l_mel_filterbank(lua_State *L) {
  int n_fft = size_arg(L, 1, "n_fft"), rate = size_arg(L, 2, "rate"), n_mels = size_arg(L, 3, "n_mels");
  double fmin = lj_opt_num(L, 4, "fmin", 0.0), fmax = lj_opt_num(L, 5, "fmax", 0.0);
  if (!lua_isnoneornil(L, 5) && !(fmax > 0.0))
    lj_error(L, "mel_filterbank: argument 5 (fmax) must be a number > 0, got %g", fmax);
  return lj_push_tensor(L, jbx_mel_filterbank(n_fft, rate, n_mels, (float)fmin, (float)fmax));
}

static int l_stft_window(lua_State *L) {
  int n_fft = size_arg(L, 1, "n_fft");
  return lj_push_tensor(L, jbx_stft_window(n_fft, opt_size(L, 2, "win", n_fft)));
}

void lj_open_stft(lua_State *L) {
  static const luaL_Reg fns[] = {{"stft_mag", l_stft_mag},
                                 {"stft", l_stft},
                                 {"istft", l_istft},
                                 {"mel_filterbank", l_mel_filterbank},
                                 {"stft_window", l_stft_window},
                                 {NULL, NULL}};
  lj_setfuncs(L, fns, "");
}
