/* The binding's one dialect (see lj_args.h): every argument, option and error helper. */
#include "lj_args.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "jbx_error.h"
#include "lj_tensor.h"

/* ------------------------------------------------------------------ errors */

int lj_error(lua_State *L, const char *fmt, ...) {
  char buf[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return luaL_error(L, "%s", buf);
}

int lj_raise(lua_State *L) { return luaL_error(L, "%s", jbx_last_error()); }

const char *lj_fn_name(lua_State *L) {
  if (lua_type(L, lua_upvalueindex(1)) == LUA_TSTRING) return lua_tostring(L, lua_upvalueindex(1));
  lua_Debug ar;
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name) return ar.name;
  return "?";
}

bool lj_is_tensor(lua_State *L, int idx) { return luaL_testudata(L, idx, LJ_TENSOR_MT) != NULL; }

const char *lj_typename(lua_State *L, int idx) {
  if (lua_isnone(L, idx)) return "no value";
  if (lj_is_tensor(L, idx)) return "tensor";
  if (lua_type(L, idx) == LUA_TUSERDATA && luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) {
    const char *n = lua_tostring(L, -1); /* kept alive by the metatable */
    lua_pop(L, 1);
    return n;
  }
  return luaL_typename(L, idx);
}

/* What a value is, for "got ...": a number's value when a number was wanted of another
 * kind ("got 1.5", "got 0"), else its type ("got nil", "got string"). */
static const char *got_text(lua_State *L, int idx, bool show_number, char *buf, size_t size) {
  if (!show_number || lua_type(L, idx) != LUA_TNUMBER) return lj_typename(L, idx);
  if (lua_isinteger(L, idx)) snprintf(buf, size, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
  else snprintf(buf, size, "%.14g", lua_tonumber(L, idx));
  return buf;
}

/* Arguments count from 1 as Lua sees them; a method-only function ("rng:below") does not
 * count self, so its first argument is the one after the colon. */
static int arg_error(lua_State *L, int idx, const char *what, const char *expected, bool show_number) {
  const char *fn = lj_fn_name(L);
  char got[48];
  int shown = strchr(fn, ':') ? idx - 1 : idx;
  return lj_error(L, "%s: argument %d (%s) must be %s, got %s", fn, shown, what, expected,
                  got_text(L, idx, show_number, got, sizeof got));
}

int lj_arg_error(lua_State *L, int idx, const char *what, const char *expected) {
  return arg_error(L, idx, what, expected, false);
}

void lj_check_stack(lua_State *L, int n, const char *why) {
  if (!lua_checkstack(L, n)) lj_error(L, "%s: %s (out of Lua stack)", lj_fn_name(L), why);
}

/* ------------------------------------------------------------------ tensors */

static jbx_tensor *box_tensor(lua_State *L, int idx) {
  lj_box *b = luaL_testudata(L, idx, LJ_TENSOR_MT);
  if (!b) return NULL;
  if (!b->t) luaL_error(L, "tensor: used after close");
  return b->t;
}

jbx_tensor *lj_tensor(lua_State *L, int idx, const char *what) {
  jbx_tensor *t = box_tensor(L, idx);
  if (!t) lj_arg_error(L, idx, what, "a tensor");
  return t;
}

jbx_tensor *lj_opt_tensor(lua_State *L, int idx, const char *what) {
  return lua_isnoneornil(L, idx) ? NULL : lj_tensor(L, idx, what);
}

jbx_tensor *lj_tensor_or_number(lua_State *L, int idx, const char *what, const jbx_tensor *like) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TNUMBER) {
    jbx_tensor *s;
    lua_Integer i = lua_tointeger(L, idx);
    if (like && like->dtype == JBX_I32 && lua_isinteger(L, idx) && i >= INT32_MIN && i <= INT32_MAX) {
      int32_t v = (int32_t)i;
      s = jbx_from_ints(0, NULL, &v);
    } else {
      s = jbx_scalar((float)lua_tonumber(L, idx));
    }
    lj_push_tensor(L, s);
    lua_replace(L, idx);
    return s;
  }
  jbx_tensor *t = box_tensor(L, idx);
  if (!t) lj_arg_error(L, idx, what, "a tensor or a number");
  return t;
}

/* ------------------------------------------------------------------ plain values */

/* "an integer >= lo", or "an integer in lo..hi" when hi is not the largest integer. */
static const char *int_range_text(char *buf, size_t size, lua_Integer lo, lua_Integer hi) {
  if (hi == LUA_MAXINTEGER) snprintf(buf, size, "an integer >= " LUA_INTEGER_FMT, (LUAI_UACINT)lo);
  else snprintf(buf, size, "an integer in " LUA_INTEGER_FMT ".." LUA_INTEGER_FMT, (LUAI_UACINT)lo, (LUAI_UACINT)hi);
  return buf;
}

lua_Integer lj_int(lua_State *L, int idx, const char *what) {
  int ok = 0;
  lua_Integer v = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &ok) : 0;
  if (!ok) arg_error(L, idx, what, "an integer", true);
  return v;
}

lua_Integer lj_int_in(lua_State *L, int idx, const char *what, lua_Integer lo, lua_Integer hi) {
  lua_Integer v = lj_int(L, idx, what);
  char want[96];
  if (v < lo || v > hi) arg_error(L, idx, what, int_range_text(want, sizeof want, lo, hi), true);
  return v;
}

lua_Integer lj_opt_int_in(lua_State *L, int idx, const char *what, lua_Integer lo, lua_Integer hi,
                          lua_Integer dflt) {
  return lua_isnoneornil(L, idx) ? dflt : lj_int_in(L, idx, what, lo, hi);
}

double lj_num(lua_State *L, int idx, const char *what) {
  if (lua_type(L, idx) != LUA_TNUMBER) lj_arg_error(L, idx, what, "a number");
  return lua_tonumber(L, idx);
}

double lj_opt_num(lua_State *L, int idx, const char *what, double dflt) {
  return lua_isnoneornil(L, idx) ? dflt : lj_num(L, idx, what);
}

bool lj_bool(lua_State *L, int idx, const char *what) {
  if (lua_type(L, idx) != LUA_TBOOLEAN) lj_arg_error(L, idx, what, "a boolean");
  return lua_toboolean(L, idx);
}

bool lj_opt_bool(lua_State *L, int idx, const char *what, bool dflt) {
  return lua_isnoneornil(L, idx) ? dflt : lj_bool(L, idx, what);
}

const char *lj_string(lua_State *L, int idx, const char *what, size_t *len) {
  if (lua_type(L, idx) != LUA_TSTRING) lj_arg_error(L, idx, what, "a string");
  return lua_tolstring(L, idx, len);
}

void lj_table(lua_State *L, int idx, const char *what) {
  if (lua_type(L, idx) != LUA_TTABLE) lj_arg_error(L, idx, what, "a table");
}

void lj_function(lua_State *L, int idx, const char *what) {
  if (lua_type(L, idx) != LUA_TFUNCTION) lj_arg_error(L, idx, what, "a function");
}

/* ------------------------------------------------------------------ dims, positions, shapes */

int lj_dim_value(lua_State *L, lua_Integer d, const jbx_tensor *t) {
  int nd = t->ndim ? t->ndim : 1;
  if (d >= 1 && d <= nd) return (int)d - 1;
  if (d < 0 && d >= -nd) return (int)(d + nd);
  char s[160];
  return lj_error(L, "%s: dim %lld out of range for a tensor of shape %s (dims are 1-based: 1..%d, or -%d..-1 from the end)",
                  lj_fn_name(L), (long long)d, jbx_shape_str(t, s, sizeof s), nd, nd);
}

int lj_dim(lua_State *L, int idx, const jbx_tensor *t) { return lj_dim_value(L, lj_int(L, idx, "dim"), t); }

int64_t lj_position(lua_State *L, int idx, const char *what, int64_t size, bool past_end) {
  lua_Integer i = lj_int(L, idx, what);
  int64_t last = past_end ? size + 1 : size;
  if (i >= 1 && i <= last) return i - 1;
  if (i < 0 && i >= -size) return i + size;
  char want[128];
  snprintf(want, sizeof want, "a 1-based position in 1..%lld (or -%lld..-1 from the end)", (long long)last,
           (long long)size);
  return arg_error(L, idx, what, want, true);
}

static int64_t shape_size(lua_State *L, int vidx, int d, bool allow_infer) {
  int ok = 0;
  lua_Integer v = lua_type(L, vidx) == LUA_TNUMBER ? lua_tointegerx(L, vidx, &ok) : 0;
  if (!ok || v < (allow_infer ? -1 : 0)) {
    const char *want = allow_infer ? "a non-negative integer or -1" : "a non-negative integer";
    if (lua_type(L, vidx) == LUA_TNUMBER)
      lj_error(L, "%s: size %g in dim %d must be %s", lj_fn_name(L), lua_tonumber(L, vidx), d + 1, want);
    lj_error(L, "%s: size in dim %d must be %s, got %s", lj_fn_name(L), d + 1, want, lj_typename(L, vidx));
  }
  return (int64_t)v;
}

int lj_shape_args(lua_State *L, int idx, int64_t *shape, int *next, bool allow_infer) {
  int n = 0;
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_Integer len = (lua_Integer)lua_rawlen(L, idx);
    if (len > JBX_MAX_DIMS)
      lj_error(L, "%s: %lld dims given, at most %d supported", lj_fn_name(L), (long long)len, JBX_MAX_DIMS);
    for (n = 0; n < (int)len; n++) {
      lua_rawgeti(L, idx, n + 1);
      shape[n] = shape_size(L, -1, n, allow_infer);
      lua_pop(L, 1);
    }
    if (next) *next = idx + 1;
    return n;
  }
  if (lua_type(L, idx) != LUA_TNUMBER) lj_arg_error(L, idx, "shape", "a table of sizes or sizes as numbers");
  while (lua_type(L, idx + n) == LUA_TNUMBER) {
    if (n == JBX_MAX_DIMS) lj_error(L, "%s: more than %d dims given", lj_fn_name(L), JBX_MAX_DIMS);
    shape[n] = shape_size(L, idx + n, n, allow_infer);
    n++;
  }
  if (next) *next = idx + n;
  return n;
}

/* ------------------------------------------------------------------ options */

bool lj_opts(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return false;
  if (lua_type(L, idx) != LUA_TTABLE) lj_arg_error(L, idx, "options", "a table");
  return true;
}

void lj_check_options(lua_State *L, int idx, const char *const *known) {
  idx = lua_absindex(L, idx);
  if (!lj_opts(L, idx)) return;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    bool ok = false;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      for (const char *const *p = known; *p && !ok; p++) ok = strcmp(*p, k) == 0;
    }
    if (!ok) {
      char list[256] = "";
      for (const char *const *p = known; *p; p++) {
        if (p != known) strncat(list, ", ", sizeof list - strlen(list) - 1);
        strncat(list, *p, sizeof list - strlen(list) - 1);
      }
      char key[64];
      if (lua_type(L, -2) == LUA_TSTRING) snprintf(key, sizeof key, "'%s'", lua_tostring(L, -2));
      else if (lua_type(L, -2) == LUA_TNUMBER) snprintf(key, sizeof key, "[%g]", lua_tonumber(L, -2));
      else snprintf(key, sizeof key, "of type %s", luaL_typename(L, -2));
      lj_error(L, "%s: unknown option %s (known: %s)", lj_fn_name(L), key, known[0] ? list : "none");
    }
    lua_pop(L, 1);
  }
}

/* Pushes option `key` of the table at idx (nil when there is no table); true if non-nil. */
static bool get_option(lua_State *L, int idx, const char *key) {
  idx = lua_absindex(L, idx);
  if (!lj_opts(L, idx)) {
    lua_pushnil(L);
    return false;
  }
  return lua_getfield(L, idx, key) != LUA_TNIL;
}

static int option_error(lua_State *L, const char *key, const char *expected, bool show_number) {
  char got[48];
  return lj_error(L, "%s: option '%s' must be %s, got %s", lj_fn_name(L), key, expected,
                  got_text(L, -1, show_number, got, sizeof got));
}

lua_Integer lj_opt_int_field_in(lua_State *L, int idx, const char *key, lua_Integer lo, lua_Integer hi,
                                lua_Integer dflt) {
  lua_Integer v = dflt;
  if (get_option(L, idx, key)) {
    int ok = 0;
    v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &ok) : 0;
    if (!ok) option_error(L, key, "an integer", true);
    char want[96];
    if (v < lo || v > hi) option_error(L, key, int_range_text(want, sizeof want, lo, hi), true);
  }
  lua_pop(L, 1);
  return v;
}

lua_Integer lj_opt_int_field(lua_State *L, int idx, const char *key, lua_Integer dflt) {
  return lj_opt_int_field_in(L, idx, key, LUA_MININTEGER, LUA_MAXINTEGER, dflt);
}

double lj_opt_num_field(lua_State *L, int idx, const char *key, double dflt) {
  double v = dflt;
  if (get_option(L, idx, key)) {
    if (lua_type(L, -1) != LUA_TNUMBER) option_error(L, key, "a number", false);
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

bool lj_opt_bool_field(lua_State *L, int idx, const char *key, bool dflt) {
  bool v = dflt;
  if (get_option(L, idx, key)) {
    if (lua_type(L, -1) != LUA_TBOOLEAN) option_error(L, key, "a boolean", false);
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

bool lj_opt_has(lua_State *L, int idx, const char *key) {
  bool has = get_option(L, idx, key);
  lua_pop(L, 1);
  return has;
}

/* ------------------------------------------------------------------ registration */

void lj_push_named(lua_State *L, lua_CFunction fn, const char *name, int extra) {
  lua_pushstring(L, name);
  if (extra) lua_insert(L, -1 - extra);
  lua_pushcclosure(L, fn, 1 + extra);
}

void lj_gc_type(lua_State *L, const char *mt, lua_CFunction gc) {
  if (luaL_newmetatable(L, mt)) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

void lj_setfuncs(lua_State *L, const luaL_Reg *regs, const char *prefix) {
  for (const luaL_Reg *r = regs; r->name; r++) {
    lua_pushfstring(L, "%s%s", prefix, r->name);
    lua_pushcclosure(L, r->func, 1);
    lua_setfield(L, -2, r->name);
  }
}
