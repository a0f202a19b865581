/* jbx.audio: load, info, save, resample (core/audio.c, core/resample.c). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "jbx_audio.h"
#include "lj.h"

/* A sample rate argument: 1..JBX_AUDIO_MAX_RATE. */
static int rate_arg(lua_State *L, int idx, const char *what) {
  return (int)lj_int_in(L, idx, what, 1, JBX_AUDIO_MAX_RATE);
}

/* Raises the core's last error with its "audio.info:" prefix read as "audio.load:", so a
 * load that looked at the header first still says which call failed. */
static int raise_as_load(lua_State *L) {
  const char *e = jbx_last_error();
  const char *pre = "audio.info:";
  if (!strncmp(e, pre, strlen(pre))) return lj_error(L, "audio.load:%s", e + strlen(pre));
  return lj_raise(L);
}

/* load(path [, {rate=, mono=, offset=, frames=, offset_seconds=, seconds=}]) -> tensor, rate
 * offset/frames count frames at the file's own rate; offset_seconds/seconds are converted
 * at that rate (rounded to the nearest frame). */
static int l_load(lua_State *L) {
  static const char *const known[] = {"rate", "mono", "offset", "frames", "offset_seconds", "seconds", NULL};
  const char *path = lj_string(L, 1, "path", NULL);
  jbx_audio_load_opts o = JBX_AUDIO_LOAD_DEFAULTS;
  lj_check_options(L, 2, known);
  /* 0 keeps the file's rate */
  o.rate = (int)lj_opt_int_field_in(L, 2, "rate", 0, JBX_AUDIO_MAX_RATE, 0);
  o.mono = lj_opt_bool_field(L, 2, "mono", o.mono);
  o.offset = lj_opt_int_field(L, 2, "offset", 0);
  o.frames = lj_opt_int_field(L, 2, "frames", -1);
  bool has_os = lj_opt_has(L, 2, "offset_seconds"), has_s = lj_opt_has(L, 2, "seconds");
  if (has_os && lj_opt_has(L, 2, "offset")) return lj_error(L, "audio.load: give offset or offset_seconds, not both");
  if (has_s && lj_opt_has(L, 2, "frames")) return lj_error(L, "audio.load: give frames or seconds, not both");
  if (has_os || has_s) {
    double os = lj_opt_num_field(L, 2, "offset_seconds", 0), s = lj_opt_num_field(L, 2, "seconds", 1);
    if (!(os >= 0) || !isfinite(os)) return lj_error(L, "audio.load: offset_seconds %f must be >= 0", os);
    if (!(s > 0) || !isfinite(s)) return lj_error(L, "audio.load: seconds %f must be > 0", s);
    struct jbx_audio_info info;
    if (jbx_audio_info(path, &info) != 0) return raise_as_load(L);
    /* Huge values saturate, and the core then says the crop is beyond the end. */
    double off = os * info.rate, len = s * info.rate;
    if (has_os) o.offset = off < 9e18 ? llround(off) : INT64_MAX;
    if (has_s) o.frames = len < 9e18 ? (llround(len) > 0 ? llround(len) : 1) : INT64_MAX;
  }
  int rate = 0;
  jbx_tensor *x = jbx_audio_load(path, &o, &rate);
  lj_push_tensor(L, x); /* raises the load error when x is NULL */
  lua_pushinteger(L, rate);
  return 2;
}

/* info(path) -> {rate=, channels=, frames=, seconds=, format=, subtype=} */
static int l_info(lua_State *L) {
  const char *path = lj_string(L, 1, "path", NULL);
  struct jbx_audio_info info;
  if (jbx_audio_info(path, &info) != 0) return lj_raise(L);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, info.rate);
  lua_setfield(L, -2, "rate");
  lua_pushinteger(L, info.channels);
  lua_setfield(L, -2, "channels");
  lua_pushinteger(L, (lua_Integer)info.frames);
  lua_setfield(L, -2, "frames");
  lua_pushnumber(L, info.seconds);
  lua_setfield(L, -2, "seconds");
  lua_pushstring(L, info.format);
  lua_setfield(L, -2, "format");
  lua_pushstring(L, info.subtype);
  lua_setfield(L, -2, "subtype");
  return 1;
}

/* save(path, tensor, rate): .wav (PCM 24-bit) or .flac (PCM 16-bit) by extension. */
static int l_save(lua_State *L) {
  const char *path = lj_string(L, 1, "path", NULL);
  jbx_tensor *x = lj_tensor(L, 2, "audio");
  int rate = rate_arg(L, 3, "rate");
  if (jbx_audio_save(path, x, rate) != 0) return lj_raise(L);
  return 0;
}

/* resample(tensor, rate_in, rate_out) -> tensor ([frames] or [channels, frames]) */
static int l_resample(lua_State *L) {
  jbx_tensor *x = lj_tensor(L, 1, "audio");
  int rin = rate_arg(L, 2, "rate_in");
  int rout = rate_arg(L, 3, "rate_out");
  return lj_push_tensor(L, jbx_resample(x, rin, rout));
}

void lj_open_audio(lua_State *L) {
  static const luaL_Reg fns[] = {{"load", l_load},
                                 {"info", l_info},
                                 {"save", l_save},
                                 {"resample", l_resample},
                                 {NULL, NULL}};
  lua_createtable(L, 0, 4);
  lj_setfuncs(L, fns, "audio.");
  lua_setfield(L, -2, "audio");
}
