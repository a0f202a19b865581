/* Files from Lua: safetensors save/load/info/read_into, JSON encode/decode (on cJSON
 * for parsing, our own writer for exact numbers and sorted keys), atomic text writes.
 *
 * JSON mapping: a table whose keys are exactly 1..n (n > 0) is an array, any other table
 * an object (keys sorted, number keys written as strings), the empty table {}. Lua
 * integers are written as integers, floats so they read back exactly ("3.0" for an
 * integral float); NaN/inf are errors naming the key path. Decoding reads numbers as Lua
 * reads literals ("3" an integer, exact to 64 bits; "3.0" a float), and null as
 * `json_null` (a light userdata). Everything
 * C-allocated lives in a userdata with __gc, so a Lua error never leaks it. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "jbx_safetensors.h"
#include "lj.h"

#define ST_MT "jbx.SafetensorsFile"
#define BUF_MT "jbx.JsonBuffer"
#define TREE_MT "jbx.JsonTree"
#define JSON_MAX_DEPTH 200

/* ------------------------------------------------------------------ GC-owned resources */

typedef struct {
  jbx_safetensors *st;
} st_box;

static int st_box_gc(lua_State *L) {
  st_box *b = luaL_checkudata(L, 1, ST_MT);
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

typedef struct {
  char *p;
  size_t len, cap;
} jbuf;

static int jbuf_gc(lua_State *L) {
  jbuf *b = luaL_checkudata(L, 1, BUF_MT);
  free(b->p);
  b->p = NULL;
  return 0;
}

static jbuf *jbuf_new(lua_State *L) {
  jbuf *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->p = NULL;
  b->len = b->cap = 0;
  luaL_setmetatable(L, BUF_MT);
  return b;
}

static void jb_add(lua_State *L, jbuf *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) luaL_error(L, "json: out of memory");
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void jb_str(lua_State *L, jbuf *b, const char *s) { jb_add(L, b, s, strlen(s)); }

static void jb_json_string(lua_State *L, jbuf *b, const char *s, size_t n) {
  jb_add(L, b, "\"", 1);
  size_t run = 0; /* bytes copied as they are, flushed in one go */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    char u[8];
    switch (c) {
      case '"': esc = "\\\""; break;
      case '\\': esc = "\\\\"; break;
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\t': esc = "\\t"; break;
      case '\b': esc = "\\b"; break;
      case '\f': esc = "\\f"; break;
      default:
        if (c < 0x20) {
          snprintf(u, sizeof u, "\\u%04x", c);
          esc = u;
        }
    }
    if (esc) {
      jb_add(L, b, s + i - run, run);
      run = 0;
      jb_str(L, b, esc);
    } else {
      run++;
    }
  }
  jb_add(L, b, s + n - run, run);
  jb_add(L, b, "\"", 1);
}

typedef struct {
  cJSON *root;
} tree_box;

static int tree_gc(lua_State *L) {
  tree_box *b = luaL_checkudata(L, 1, TREE_MT);
  cJSON_Delete(b->root);
  b->root = NULL;
  return 0;
}

/* ------------------------------------------------------------------ json_encode */

typedef struct {
  lua_State *L;
  jbuf *b;
  bool indent;
  char path[256];
  size_t plen;
} enc;

/* Appends ".key", ["key"] or [i] to the key path (truncated when very long); returns
 * the old length for path_pop. */
static size_t path_push(enc *e, const char *key, bool ident, long long i) {
  size_t old = e->plen, room = sizeof e->path - e->plen;
  int n;
  if (room <= 1) return old;
  if (!key)
    n = snprintf(e->path + e->plen, room, "[%lld]", i);
  else if (ident)
    n = snprintf(e->path + e->plen, room, ".%s", key);
  else
    n = snprintf(e->path + e->plen, room, "[\"%s\"]", key);
  e->plen += (size_t)n < room ? (size_t)n : room - 1;
  return old;
}

static void path_pop(enc *e, size_t old) {
  e->plen = old;
  e->path[old] = '\0';
}

static bool is_identifier(const char *s, size_t n) {
  if (n == 0 || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) return false;
  for (size_t i = 1; i < n; i++)
    if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= '0' && s[i] <= '9')))
      return false;
  return strlen(s) == n;
}

static void newline(enc *e, int depth) {
  if (!e->indent) return;
  jb_add(e->L, e->b, "\n", 1);
  for (int i = 0; i < depth; i++) jb_add(e->L, e->b, "  ", 2);
}

static void enc_number(enc *e, int idx) {
  char buf[64];
  if (lua_isinteger(e->L, idx)) {
    snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(e->L, idx));
  } else {
    double v = lua_tonumber(e->L, idx);
    if (!isfinite(v))
      luaL_error(e->L, "json_encode: %s is %s; JSON has no NaN or infinity", e->path,
                 isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(buf, sizeof buf, "%.*g", prec, v);
      if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eE")) strcat(buf, ".0"); /* stays a float when read back */
  }
  jb_str(e->L, e->b, buf);
}

typedef struct {
  const char *s;
  size_t len;
  int i;
} key_ent;

static int cmp_key(const void *pa, const void *pb) {
  const key_ent *a = pa, *b = pb;
  size_t n = a->len < b->len ? a->len : b->len;
  int c = memcmp(a->s, b->s, n);
  return c ? c : (a->len > b->len) - (a->len < b->len);
}

static void enc_value(enc *e, int idx, int depth);

static void enc_table(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  if (depth >= JSON_MAX_DEPTH)
    luaL_error(L, "json_encode: %s is nested more than %d levels deep (a table that contains itself?)", e->path,
               JSON_MAX_DEPTH);
  luaL_checkstack(L, 8, "json_encode: nested too deeply");
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  lua_Integer count = 0;
  bool arr = true;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    count++;
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n) arr = false;
    lua_pop(L, 1);
  }
  if (count == 0) {
    jb_str(L, e->b, "{}");
    return;
  }
  if (arr && count == n) {
    jb_add(L, e->b, "[", 1);
    for (lua_Integer i = 1; i <= n; i++) {
      if (i > 1) jb_add(L, e->b, ",", 1);
      newline(e, depth + 1);
      lua_rawgeti(L, idx, i);
      size_t old = path_push(e, NULL, false, (long long)i);
      enc_value(e, lua_gettop(L), depth + 1);
      path_pop(e, old);
      lua_pop(L, 1);
    }
    newline(e, depth);
    jb_add(L, e->b, "]", 1);
    return;
  }
  if (count > INT32_MAX / 2) luaL_error(L, "json_encode: %s has too many keys", e->path);
  /* Object: key strings and values into a scratch table, keys sorted through an index. */
  lua_createtable(L, (int)(2 * count), 0);
  int kv = lua_gettop(L);
  key_ent *keys = lua_newuserdatauv(L, sizeof *keys * (size_t)count, 0);
  int k = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int kt = lua_type(L, -2);
    if (kt == LUA_TSTRING) {
      lua_pushvalue(L, -2);
    } else if (kt == LUA_TNUMBER) {
      char buf[64];
      if (lua_isinteger(L, -2)) {
        snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, -2));
      } else {
        double v = lua_tonumber(L, -2);
        if (!isfinite(v)) luaL_error(L, "json_encode: %s has a nan or inf key", e->path);
        snprintf(buf, sizeof buf, "%.17g", v);
      }
      lua_pushstring(L, buf);
    } else {
      luaL_error(L, "json_encode: %s has a key of type %s (JSON object keys are strings)", e->path,
                 luaL_typename(L, -2));
    }
    lua_rawseti(L, kv, 2 * k + 1);
    lua_rawseti(L, kv, 2 * k + 2); /* pops the value; the key stays for lua_next */
    k++;
  }
  for (int i = 0; i < k; i++) {
    lua_rawgeti(L, kv, 2 * i + 1);
    keys[i].s = lua_tolstring(L, -1, &keys[i].len); /* anchored by kv */
    keys[i].i = i;
    lua_pop(L, 1);
  }
  qsort(keys, (size_t)k, sizeof *keys, cmp_key);
  jb_add(L, e->b, "{", 1);
  for (int i = 0; i < k; i++) {
    if (i > 0 && cmp_key(&keys[i - 1], &keys[i]) == 0)
      luaL_error(L, "json_encode: %s has two keys that both become \"%s\"", e->path, keys[i].s);
    if (i) jb_add(L, e->b, ",", 1);
    newline(e, depth + 1);
    jb_json_string(L, e->b, keys[i].s, keys[i].len);
    jb_str(L, e->b, e->indent ? ": " : ":");
    size_t old = path_push(e, keys[i].s, is_identifier(keys[i].s, keys[i].len), 0);
    lua_rawgeti(L, kv, 2 * keys[i].i + 2);
    enc_value(e, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
    path_pop(e, old);
  }
  newline(e, depth);
  jb_add(L, e->b, "}", 1);
  lua_pop(L, 2); /* kv, keys */
}

static void enc_value(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: jb_str(L, e->b, "null"); break;
    case LUA_TBOOLEAN: jb_str(L, e->b, lua_toboolean(L, idx) ? "true" : "false"); break;
    case LUA_TNUMBER: enc_number(e, idx); break;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      jb_json_string(L, e->b, s, n);
      break;
    }
    case LUA_TTABLE: enc_table(e, idx, depth); break;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) {
        jb_str(L, e->b, "null");
        break;
      }
      /* fallthrough */
    default: {
      const char *tn = luaL_testudata(L, idx, LJ_TENSOR_MT) ? "tensor" : luaL_typename(L, idx);
      luaL_error(L, "json_encode: %s is a %s; JSON holds tables, strings, numbers and booleans%s", e->path, tn,
                 luaL_testudata(L, idx, LJ_TENSOR_MT) ? " (use t:totable() or t:item())" : "");
    }
  }
}

/* json_encode(value, {indent = bool}) -> string */
static int l_json_encode(lua_State *L) {
  static const char *const known[] = {"indent", NULL};
  lua_settop(L, 2);
  lj_check_options(L, 2, "json_encode", known);
  bool indent = false;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "indent");
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
      return luaL_error(L, "json_encode: option 'indent' must be a boolean, got %s", luaL_typename(L, -1));
    indent = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  enc e = {.L = L, .indent = indent, .plen = 5};
  strcpy(e.path, "value");
  e.b = jbuf_new(L);
  enc_value(&e, 1, 0);
  lua_pushlstring(L, e.b->p ? e.b->p : "", e.b->len);
  return 1;
}

/* ------------------------------------------------------------------ json_decode */

/* cJSON keeps numbers as doubles only. To keep integers exact (and "3.0" a float) we
 * re-read each number's literal: numbers are the only JSON tokens holding digits outside
 * strings, and a walk of cJSON's tree meets them in document order. */
typedef struct {
  const char *s;
  size_t len, pos;
} num_scan;

static bool next_number(num_scan *ns, const char **tok, size_t *n) {
  while (ns->pos < ns->len) {
    char c = ns->s[ns->pos];
    if (c == '"') {
      for (ns->pos++; ns->pos < ns->len && ns->s[ns->pos] != '"'; ns->pos++)
        if (ns->s[ns->pos] == '\\') ns->pos++;
      ns->pos++;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      size_t start = ns->pos;
      while (ns->pos < ns->len && strchr("+-0123456789.eE", ns->s[ns->pos]) && ns->s[ns->pos]) ns->pos++;
      *tok = ns->s + start;
      *n = ns->pos - start;
      return true;
    } else {
      ns->pos++;
    }
  }
  return false;
}

static void push_number(lua_State *L, const cJSON *it, num_scan *ns) {
  const char *tok;
  size_t n;
  char buf[64];
  if (ns && next_number(ns, &tok, &n) && n < sizeof buf) {
    memcpy(buf, tok, n);
    buf[n] = '\0';
    /* Lua's own rule: "3" an integer, "3.0" / "1e3" / out-of-range integers floats. */
    if (lua_stringtonumber(L, buf) == n + 1) return;
  }
  lua_pushnumber(L, it->valuedouble);
}

static void push_json(lua_State *L, const cJSON *it, num_scan *ns) {
  luaL_checkstack(L, 4, "json_decode: nested too deeply");
  if (cJSON_IsNull(it) || cJSON_IsInvalid(it)) {
    lua_pushlightuserdata(L, NULL);
  } else if (cJSON_IsBool(it)) {
    lua_pushboolean(L, cJSON_IsTrue(it));
  } else if (cJSON_IsNumber(it)) {
    push_number(L, it, ns);
  } else if (cJSON_IsString(it)) {
    lua_pushstring(L, it->valuestring);
  } else if (cJSON_IsArray(it)) {
    lua_createtable(L, cJSON_GetArraySize(it), 0);
    lua_Integer i = 1;
    for (const cJSON *c = it->child; c; c = c->next) {
      push_json(L, c, ns);
      lua_rawseti(L, -2, i++);
    }
  } else if (cJSON_IsObject(it)) {
    lua_createtable(L, 0, cJSON_GetArraySize(it));
    for (const cJSON *c = it->child; c; c = c->next) {
      push_json(L, c, ns);
      lua_setfield(L, -2, c->string);
    }
  } else {
    lua_pushstring(L, it->valuestring ? it->valuestring : "");
  }
}

/* Raises "fn: invalid JSON at line L, column C (byte B): near '...'" for s[pos]. */
static int json_error_at(lua_State *L, const char *fn, const char *what, const char *s, size_t len, size_t pos) {
  if (pos > len) pos = len;
  int line = 1, col = 1;
  for (size_t i = 0; i < pos; i++) {
    if (s[i] == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  if (pos == len)
    return luaL_error(L, "%s: %s at line %d, column %d (byte %d): unexpected end of input", fn, what, line, col,
                      (int)pos);
  char near[24];
  size_t k = 0;
  for (size_t i = pos; i < len && k < 20; i++) near[k++] = (s[i] >= 0x20 && s[i] != 0x7f) ? s[i] : ' ';
  near[k] = '\0';
  return luaL_error(L, "%s: %s at line %d, column %d (byte %d): near '%s'", fn, what, line, col, (int)pos, near);
}

/* Parses s into a boxed tree left on the stack and pushes its Lua value; errors name
 * the position. */
static void decode_to_lua(lua_State *L, const char *fn, const char *s, size_t len) {
  tree_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->root = NULL;
  luaL_setmetatable(L, TREE_MT);
  const char *end = NULL;
  b->root = cJSON_ParseWithLengthOpts(s, len, &end, 0);
  if (!b->root) {
    size_t pos = end && end >= s && end <= s + len ? (size_t)(end - s) : 0;
    /* cJSON stops before trailing whitespace it could not use: point at the next token. */
    while (pos < len && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\t' || s[pos] == '\r')) pos++;
    json_error_at(L, fn, "invalid JSON", s, len, pos);
  }
  for (const char *p = end; p && p < s + len; p++)
    if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r')
      json_error_at(L, fn, "text after the JSON value", s, len, (size_t)(p - s));
  num_scan ns = {s, len, 0};
  push_json(L, b->root, &ns);
  cJSON_Delete(b->root);
  b->root = NULL;
  lua_remove(L, -2); /* the box */
}

static int l_json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  decode_to_lua(L, "json_decode", s, len);
  return 1;
}

/* ------------------------------------------------------------------ atomic text writes */

static int l_fsync_write(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (jbx_write_file_atomic(path, s, n) != 0) return luaL_error(L, "fsync_write: %s", jbx_last_error());
  return 0;
}

/* ------------------------------------------------------------------ safetensors */

/* Checks the value at -1 is a tensor and returns it; `what` names it in the error. */
static jbx_tensor *table_tensor(lua_State *L, const char *fn, const char *name) {
  if (!luaL_testudata(L, -1, LJ_TENSOR_MT))
    luaL_error(L, "%s: value for '%s' must be a tensor, got %s", fn, name, luaL_typename(L, -1));
  return lj_check_tensor(L, lua_gettop(L));
}

static const char *table_key(lua_State *L, const char *fn) {
  if (lua_type(L, -2) != LUA_TSTRING)
    luaL_error(L, "%s: tensors must be given by name (string keys), got a %s key", fn, luaL_typename(L, -2));
  return lua_tostring(L, -2);
}

/* safetensors_save(path, {name = tensor, ...}, {key = "string value", ...} or nil) */
static int l_safetensors_save(lua_State *L) {
  const char *fn = "safetensors_save";
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    table_key(L, fn);
    table_tensor(L, fn, lua_tostring(L, -2));
    n++;
    lua_pop(L, 1);
  }
  const char **names = lua_newuserdatauv(L, sizeof *names * (size_t)(n ? n : 1), 0);
  jbx_tensor **ts = lua_newuserdatauv(L, sizeof *ts * (size_t)(n ? n : 1), 0);
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, 2) && i < n) {
    names[i] = lua_tostring(L, -2); /* anchored by the table */
    ts[i] = lj_check_tensor(L, lua_gettop(L));
    i++;
    lua_pop(L, 1);
  }
  const char *meta = NULL;
  if (lua_istable(L, 3)) {
    jbuf *b = jbuf_new(L);
    jb_add(L, b, "{", 1);
    bool first = true;
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (lua_type(L, -2) != LUA_TSTRING)
        return luaL_error(L, "%s: metadata keys must be strings, got a %s key", fn, luaL_typename(L, -2));
      if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "%s: metadata value for '%s' must be a string, got %s (safetensors metadata holds "
                          "strings only)", fn, lua_tostring(L, -2), luaL_typename(L, -1));
      size_t kl, vl;
      const char *k = lua_tolstring(L, -2, &kl), *v = lua_tolstring(L, -1, &vl);
      if (!first) jb_add(L, b, ",", 1);
      first = false;
      jb_json_string(L, b, k, kl);
      jb_add(L, b, ":", 1);
      jb_json_string(L, b, v, vl);
      lua_pop(L, 1);
    }
    jb_add(L, b, "}", 2); /* with the NUL */
    meta = b->p;
  }
  if (jbx_safetensors_save(path, i, names, (jbx_tensor *const *)ts, meta) != 0) return lj_raise(L);
  return 0;
}

/* Pushes the file's metadata as a table of strings (empty when it has none). */
static void push_metadata(lua_State *L, jbx_safetensors *st) {
  const char *m = jbx_safetensors_metadata(st);
  if (m)
    decode_to_lua(L, "safetensors", m, strlen(m));
  else
    lua_newtable(L);
}

/* safetensors_load(path) -> {name = tensor}, {metadata key = string} */
static int l_safetensors_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  st_box *b = open_boxed(L, path);
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
  const char *path = luaL_checkstring(L, 1);
  st_box *b = open_boxed(L, path);
  int n = jbx_safetensors_count(b->st);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    int64_t shape[JBX_MAX_DIMS];
    int nd = jbx_safetensors_shape(b->st, i, shape);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, jbx_safetensors_dtype_str(b->st, i));
    lua_setfield(L, -2, "dtype");
    lua_pushstring(L, jbx_safetensors_dtype(b->st, i) == JBX_I32 ? "int32" : "float32");
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
  const char *fn = "safetensors_read_into";
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  st_box *b = open_boxed(L, path);
  for (int pass = 0; pass < 2; pass++) {
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *name = table_key(L, fn);
      jbx_tensor *t = table_tensor(L, fn, name);
      if (pass == 0) {
        int i = jbx_safetensors_find(b->st, name);
        if (i < 0) return luaL_error(L, "%s: no tensor named '%s'", path, name);
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

void lj_open_io(lua_State *L) {
  if (luaL_newmetatable(L, ST_MT)) {
    lua_pushcfunction(L, st_box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, BUF_MT)) {
    lua_pushcfunction(L, jbuf_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, TREE_MT)) {
    lua_pushcfunction(L, tree_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {
      {"safetensors_save", l_safetensors_save},
      {"safetensors_load", l_safetensors_load},
      {"safetensors_info", l_safetensors_info},
      {"safetensors_read_into", l_safetensors_read_into},
      {"json_encode", l_json_encode},
      {"json_decode", l_json_decode},
      {"fsync_write", l_fsync_write},
      {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "json_null");
}
