/* jbx.audio: load, info, save, resample (core/audio.c, core/resample.c). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "jbx_audio.h"
#include "lj.h"

/* A rate argument as int, with a message naming fn when it cannot be one. */
static int rate_arg(lua_State *L, int idx, const char *fn, const char *what) {
  lua_Integer v = luaL_checkinteger(L, idx);
  if (v < 1 || v > JBX_AUDIO_MAX_RATE)
    return luaL_error(L, "%s: bad %s %I (want 1..%d)", fn, what, v, JBX_AUDIO_MAX_RATE);
  return (int)v;
}

/* Option readers that name "audio.load" in their messages (the shared lj_opt_* helpers
 * name the bare Lua function, "load"). */
static lua_Integer opt_int(lua_State *L, int idx, const char *key, lua_Integer dflt) {
  int t = lua_getfield(L, idx, key), ok = 1;
  lua_Integer v = dflt;
  if (t == LUA_TNUMBER) v = lua_tointegerx(L, -1, &ok);
  if (t == LUA_TNUMBER && !ok)
    return luaL_error(L, "audio.load: option '%s' must be an integer, got %f", key,
                      lua_tonumber(L, -1));
  if (t != LUA_TNIL && t != LUA_TNUMBER)
    return luaL_error(L, "audio.load: option '%s' must be an integer, got %s", key,
                      lua_typename(L, t));
  lua_pop(L, 1);
  return v;
}

static double opt_num(lua_State *L, int idx, const char *key, double dflt) {
  int t = lua_getfield(L, idx, key);
  if (t != LUA_TNIL && t != LUA_TNUMBER)
    return luaL_error(L, "audio.load: option '%s' must be a number, got %s", key,
                      lua_typename(L, t));
  double v = t == LUA_TNIL ? dflt : lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static bool has_field(lua_State *L, int idx, const char *key) {
  bool has = lua_getfield(L, idx, key) != LUA_TNIL;
  lua_pop(L, 1);
  return has;
}

/* Raises the core's last error with its "audio.info:" prefix read as "audio.load:", so a
 * load that looked at the header first still says which call failed. */
static int raise_as_load(lua_State *L) {
  const char *e = jbx_last_error();
  const char *pre = "audio.info:";
  if (!strncmp(e, pre, strlen(pre))) return luaL_error(L, "audio.load:%s", e + strlen(pre));
  return lj_raise(L);
}

/* load(path [, {rate=, mono=, offset=, frames=, offset_seconds=, seconds=}]) -> tensor, rate
 * offset/frames count frames at the file's own rate; offset_seconds/seconds are converted
 * at that rate (rounded to the nearest frame). */
static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  jbx_audio_load_opts o = JBX_AUDIO_LOAD_DEFAULTS;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    static const char *const known[] = {"rate",   "mono",           "offset",
                                        "frames", "offset_seconds", "seconds", NULL};
    lj_check_options(L, 2, "audio.load", known);
    lua_Integer rate = opt_int(L, 2, "rate", 0);
    if (rate < 0 || rate > JBX_AUDIO_MAX_RATE)
      return luaL_error(L, "audio.load: bad rate %I for '%s' (want 0 to keep the file's "
                        "rate, or 1..%d)",
                        rate, path, JBX_AUDIO_MAX_RATE);
    o.rate = (int)rate;
    int t = lua_getfield(L, 2, "mono");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
      return luaL_error(L, "audio.load: option 'mono' must be a boolean, got %s",
                        lua_typename(L, t));
    o.mono = lua_toboolean(L, -1);
    lua_pop(L, 1);
    o.offset = opt_int(L, 2, "offset", 0);
    o.frames = opt_int(L, 2, "frames", -1);
    bool has_os = has_field(L, 2, "offset_seconds"), has_s = has_field(L, 2, "seconds");
    if (has_os && has_field(L, 2, "offset"))
      return luaL_error(L, "audio.load: give offset or offset_seconds, not both");
    if (has_s && has_field(L, 2, "frames"))
      return luaL_error(L, "audio.load: give frames or seconds, not both");
    if (has_os || has_s) {
      double os = opt_num(L, 2, "offset_seconds", 0);
      double s = opt_num(L, 2, "seconds", 1);
      if (!(os >= 0) || !isfinite(os))
        return luaL_error(L, "audio.load: offset_seconds %f must be >= 0", os);
      if (!(s > 0) || !isfinite(s))
        return luaL_error(L, "audio.load: seconds %f must be > 0", s);
      struct jbx_audio_info info;
      if (jbx_audio_info(path, &info) != 0) return raise_as_load(L);
      /* Huge values saturate, and the core then says the crop is beyond the end. */
      double off = os * info.rate, len = s * info.rate;
      if (has_os) o.offset = off < 9e18 ? llround(off) : INT64_MAX;
      if (has_s) o.frames = len < 9e18 ? (llround(len) > 0 ? llround(len) : 1) : INT64_MAX;
    }
  }
  int rate = 0;
  jbx_tensor *x = jbx_audio_load(path, &o, &rate);
  lj_push_tensor(L, x); /* raises the load error when x is NULL */
  lua_pushinteger(L, rate);
  return 2;
}

/* info(path) -> {rate=, channels=, frames=, seconds=, format=, subtype=} */
static int l_info(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
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
  const char *path = luaL_checkstring(L, 1);
  jbx_tensor *x = lj_check_tensor(L, 2);
  int rate = rate_arg(L, 3, "audio.save", "rate");
  if (jbx_audio_save(path, x, rate) != 0) return lj_raise(L);
  return 0;
}

/* resample(tensor, rate_in, rate_out) -> tensor ([frames] or [channels, frames]) */
static int l_resample(lua_State *L) {
  jbx_tensor *x = lj_check_tensor(L, 1);
  int rin = rate_arg(L, 2, "audio.resample", "input rate");
  int rout = rate_arg(L, 3, "audio.resample", "output rate");
  return lj_push_tensor(L, jbx_resample(x, rin, rout));
}

void lj_open_audio(lua_State *L) {
  static const luaL_Reg fns[] = {{"load", l_load},
                                 {"info", l_info},
                                 {"save", l_save},
                                 {"resample", l_resample},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "audio");
}
