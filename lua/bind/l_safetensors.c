/* safetensors from Lua: save, load, info, read_into (core/safetensors.c). Open files
 * live in a userdata with __gc, so a Lua error never leaks one. */
#include <stdbool.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "jbx_safetensors.h"
#include "lj.h"

#define ST_MT "jbx.SafetensorsFile"

typedef struct {
  jbx_safetensors *st;
} st_box;

static int st_box_gc(lua_State *L) {
  st_box *b = lua_touserdata(L, 1);
  jbx_safetensors_close(b->st);
  b->st = NULL;
  return 0;
}

/* Opens path into a boxed handle left on the stack; raises the core's message. */
static st_box *open_boxed(lua_State *L, const char *path) {
  st_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->st = NULL;
  luaL_setmetatable(L, ST_MT);
  b->st = jbx_safetensors_open(path);
  if (!b->st) lj_raise(L);
  return b;
}

static void close_boxed(st_box *b) {
  jbx_safetensors_close(b->st);
  b->st = NULL;
}

/* ------------------------------------------------------------------ safetensors */

/* Checks the value at -1 is a tensor and returns it; `name` is its key in the table. */
static jbx_tensor *table_tensor(lua_State *L, const char *name) {
  if (!lj_is_tensor(L, -1))
    lj_error(L, "%s: argument 2 (tensors): value for '%s' must be a tensor, got %s", lj_fn_name(L), name,
             lj_typename(L, -1));
  return lj_tensor(L, lua_gettop(L), "tensors");
}

static const char *table_key(lua_State *L) {
  if (lua_type(L, -2) != LUA_TSTRING)
    lj_error(L, "%s: argument 2 (tensors) must name its tensors (string keys), got a %s key", lj_fn_name(L),
             lj_typename(L, -2));
  return lua_tostring(L, -2);
}

/* The metadata table at idx as a compact JSON object of strings for the core, built with
 * cJSON after every key and value was checked (so nothing can raise while it is built);
 * pushes the text (a Lua string owns it) or nothing when idx is nil. */
static const char *metadata_json(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return NULL;
  if (lua_type(L, idx) != LUA_TTABLE) lj_arg_error(L, idx, "metadata", "a table of strings");
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      lj_error(L, "%s: metadata keys must be strings, got a %s key", lj_fn_name(L), lj_typename(L, -2));
    if (lua_type(L, -1) != LUA_TSTRING)
      lj_error(L, "%s: metadata value for '%s' must be a string, got %s (safetensors metadata holds strings only)",
               lj_fn_name(L), lua_tostring(L, -2), lj_typename(L, -1));
    lua_pop(L, 1);
  }
  cJSON *o = cJSON_CreateObject();
  bool ok = o != NULL;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    ok = ok && cJSON_AddStringToObject(o, lua_tostring(L, -2), lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (!text) lj_error(L, "%s: out of memory", lj_fn_name(L));
  lua_pushstring(L, text); /* (only a memory error here could leak text) */
  cJSON_free(text);
  return lua_tostring(L, -1);
}

/* safetensors_save(path, {name = tensor, ...}, {key = "string value", ...} or nil) */
static int l_safetensors_save(lua_State *L) {
  const char *path = lj_string(L, 1, "path", NULL);
  lj_table(L, 2, "tensors");
  lua_settop(L, 3);
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    table_tensor(L, table_key(L));
    n++;
    lua_pop(L, 1);
  }
  const char *meta = metadata_json(L, 3);
  const char **names = lua_newuserdatauv(L, sizeof *names * (size_t)(n ? n : 1), 0);
  jbx_tensor **ts = lua_newuserdatauv(L, sizeof *ts * (size_t)(n ? n : 1), 0);
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, 2) && i < n) {
    names[i] = lua_tostring(L, -2); /* anchored by the table */
    ts[i] = lj_tensor(L, lua_gettop(L), "tensors");
    i++;
    lua_pop(L, 1);
  }
  if (jbx_safetensors_save(path, i, names, (jbx_tensor *const *)ts, meta) != 0) return lj_raise(L);
  return 0;
}

/* Pushes the file's metadata as a table of strings (empty when it has none). */
static void push_metadata(lua_State *L, jbx_safetensors *st) {
  const char *m = jbx_safetensors_metadata(st);
  if (m)
    lj_json_push(L, "safetensors", m, strlen(m));
  else
    lua_newtable(L);
}

/* safetensors_load(path) -> {name = tensor}, {metadata key = string} */
static int l_safetensors_load(lua_State *L) {
  st_box *b = open_boxed(L, lj_string(L, 1, "path", NULL));
  int n = jbx_safetensors_count(b->st);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    const char *name = jbx_safetensors_name(b->st, i);
    lj_push_tensor(L, jbx_safetensors_get(b->st, name));
    lua_setfield(L, -2, name);
  }
  push_metadata(L, b->st);
  close_boxed(b);
  return 2;
}

/* safetensors_info(path) -> {name = {dtype = "F32", shape = {...}, loads_as = "float32"}}, metadata */
static int l_safetensors_info(lua_State *L) {
  st_box *b = open_boxed(L, lj_string(L, 1, "path", NULL));
  int n = jbx_safetensors_count(b->st);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    int64_t shape[JBX_MAX_DIMS];
    int nd = jbx_safetensors_shape(b->st, i, shape);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, jbx_safetensors_dtype_str(b->st, i));
    lua_setfield(L, -2, "dtype");
    lua_pushstring(L, jbx_dtype_name(jbx_safetensors_dtype(b->st, i)));
    lua_setfield(L, -2, "loads_as");
    lua_createtable(L, nd, 0);
    for (int d = 0; d < nd; d++) {
      lua_pushinteger(L, (lua_Integer)shape[d]);
      lua_rawseti(L, -2, d + 1);
    }
    lua_setfield(L, -2, "shape");
    lua_setfield(L, -2, jbx_safetensors_name(b->st, i));
  }
  push_metadata(L, b->st);
  close_boxed(b);
  return 2;
}

/* safetensors_read_into(path, {name = tensor}): reads each named tensor of the file into
 * the given tensor (same shape and dtype). Everything is checked before anything is
 * written, so a mismatch leaves every destination untouched. */
static int l_safetensors_read_into(lua_State *L) {
  const char *path = lj_string(L, 1, "path", NULL);
  lj_table(L, 2, "tensors");
  lua_settop(L, 2);
  st_box *b = open_boxed(L, path);
  for (int pass = 0; pass < 2; pass++) {
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *name = table_key(L);
      jbx_tensor *t = table_tensor(L, name);
      if (pass == 0) {
        int i = jbx_safetensors_find(b->st, name);
        if (i < 0) return lj_error(L, "%s: no tensor named '%s'", path, name);
        int64_t shape[JBX_MAX_DIMS];
        int nd = jbx_safetensors_shape(b->st, i, shape);
        bool same = nd == t->ndim;
        for (int d = 0; same && d < nd; d++) same = shape[d] == t->shape[d];
        if (!same || jbx_safetensors_dtype(b->st, i) != t->dtype) {
          /* The core's read_into words the mismatch. */
          if (jbx_safetensors_read_into(b->st, name, t) != 0) return lj_raise(L);
        }
      } else if (jbx_safetensors_read_into(b->st, name, t) != 0) {
        return lj_raise(L);
      }
      lua_pop(L, 1);
    }
  }
  close_boxed(b);
  return 0;
}

void lj_open_safetensors(lua_State *L) {
  lj_gc_type(L, ST_MT, st_box_gc);
  static const luaL_Reg fns[] = {
      {"safetensors_save", l_safetensors_save},
      {"safetensors_load", l_safetensors_load},
      {"safetensors_info", l_safetensors_info},
      {"safetensors_read_into", l_safetensors_read_into},
      {NULL, NULL},
  };
  lj_setfuncs(L, fns, "");
}
