/* JSON for Lua on cJSON: json_encode builds a cJSON tree and cJSON prints it;
 * json_decode parses with cJSON.
 *
 * Mapping: a table whose keys are exactly 1..n (n > 0) is an array, any other table an
 * object (keys sorted, number keys written as strings), the empty table {}. Lua integers
 * are written as integers, floats so they read back exactly ("3.0" for an integral
 * float); NaN/inf are errors naming the key path. Decoding reads numbers as Lua reads
 * literals ("3" an integer, exact to 64 bits; "3.0" a float), and null as `json_null`
 * (a light userdata). Everything cJSON allocates hangs from a userdata with __gc, so a
 * Lua error never leaks it. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "lj.h"

#define TREE_MT "jbx.JsonTree"
#define JSON_MAX_DEPTH 200

/* ------------------------------------------------------------------ the GC-owned tree */

typedef struct {
  cJSON *root;
  char *text; /* printed by cJSON */
} tree_box;

static int tree_gc(lua_State *L) {
  tree_box *b = lua_touserdata(L, 1);
  cJSON_Delete(b->root);
  cJSON_free(b->text);
  b->root = NULL;
  b->text = NULL;
  return 0;
}

static tree_box *new_box(lua_State *L) {
  tree_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->root = NULL;
  b->text = NULL;
  luaL_setmetatable(L, TREE_MT);
  return b;
}

/* ------------------------------------------------------------------ json_encode */

typedef struct {
  lua_State *L;
  tree_box *box;
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

static void out_of_memory(lua_State *L) { lj_error(L, "json_encode: out of memory"); }

/* Attaches a new item to parent (under key for an object; the root when parent is NULL)
 * before anything can raise, so the box's __gc always reaches it. */
static cJSON *attach(enc *e, cJSON *parent, const char *key, cJSON *item) {
  if (!item) out_of_memory(e->L);
  if (!parent) e->box->root = item;
  else if (!(key ? cJSON_AddItemToObject(parent, key, item) : cJSON_AddItemToArray(parent, item))) {
    cJSON_Delete(item);
    out_of_memory(e->L);
  }
  return item;
}

/* A string item; cJSON strings end at a NUL, so a string holding one becomes a raw item
 * made of cJSON-escaped pieces joined by \u0000. */
static cJSON *string_item(lua_State *L, const char *s, size_t n) {
  if (!memchr(s, '\0', n)) return cJSON_CreateString(s);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '"');
  for (const char *p = s, *end = s + n; p <= end;) {
    const char *nul = memchr(p, '\0', (size_t)(end - p));
    size_t len = nul ? (size_t)(nul - p) : (size_t)(end - p);
    lua_pushlstring(L, p, len); /* NUL-terminated copy */
    cJSON *piece = cJSON_CreateString(lua_tostring(L, -1));
    lua_pop(L, 1);
    char *text = piece ? cJSON_PrintUnformatted(piece) : NULL;
    cJSON_Delete(piece);
    if (!text) return NULL;
    luaL_addlstring(&b, text + 1, strlen(text) - 2); /* without the quotes */
    cJSON_free(text);
    if (!nul) break;
    luaL_addstring(&b, "\\u0000");
    p = nul + 1;
  }
  luaL_addchar(&b, '"');
  luaL_pushresult(&b);
  cJSON *raw = cJSON_CreateRaw(lua_tostring(L, -1));
  lua_pop(L, 1);
  return raw;
}

/* Integers exactly; floats with the fewest digits that read back to the same double, and
 * a ".0" on integral ones so they stay floats. Raw items: cJSON would print doubles only. */
static cJSON *number_item(enc *e, int idx) {
  char buf[64];
  if (lua_isinteger(e->L, idx)) {
    snprintf(buf, sizeof buf, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(e->L, idx));
  } else {
    double v = lua_tonumber(e->L, idx);
    if (!isfinite(v))
      lj_error(e->L, "json_encode: %s is %s; JSON has no NaN or infinity", e->path,
               isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(buf, sizeof buf, "%.*g", prec, v);
      if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eE")) strcat(buf, ".0");
  }
  return cJSON_CreateRaw(buf);
}

static void enc_value(enc *e, int idx, int depth, cJSON *parent, const char *key);

static void enc_table(enc *e, int idx, int depth, cJSON *parent, const char *key) {
  lua_State *L = e->L;
  if (depth >= JSON_MAX_DEPTH)
    lj_error(L, "json_encode: %s is nested more than %d levels deep (a table that contains itself?)", e->path,
             JSON_MAX_DEPTH);
  lj_check_stack(L, 8, "nested too deeply");
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  lua_Integer count = 0;
  bool arr = true;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    count++;
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n) arr = false;
    lua_pop(L, 1);
  }
  if (count > 0 && arr && count == n) {
    cJSON *a = attach(e, parent, key, cJSON_CreateArray());
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      size_t old = path_push(e, NULL, false, (long long)i);
      enc_value(e, lua_gettop(L), depth + 1, a, NULL);
      path_pop(e, old);
      lua_pop(L, 1);
    }
    return;
  }
  cJSON *o = attach(e, parent, key, cJSON_CreateObject());
  if (count == 0) return;
  if (count > INT32_MAX / 2) lj_error(L, "json_encode: %s has too many keys", e->path);
  /* Key strings and values into a scratch table, keys sorted through an index. */
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
        if (!isfinite(v)) lj_error(L, "json_encode: %s has a nan or inf key", e->path);
        snprintf(buf, sizeof buf, "%.17g", v);
      }
      lua_pushstring(L, buf);
    } else {
      lj_error(L, "json_encode: %s has a key of type %s (JSON object keys are strings)", e->path,
               lj_typename(L, -2));
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
  for (int i = 0; i < k; i++) {
    if (i > 0 && cmp_key(&keys[i - 1], &keys[i]) == 0)
      lj_error(L, "json_encode: %s has two keys that both become \"%s\"", e->path, keys[i].s);
    size_t old = path_push(e, keys[i].s, is_identifier(keys[i].s, keys[i].len), 0);
    lua_rawgeti(L, kv, 2 * keys[i].i + 2);
    enc_value(e, lua_gettop(L), depth + 1, o, keys[i].s);
    lua_pop(L, 1);
    path_pop(e, old);
  }
  lua_pop(L, 2); /* kv, keys */
}

static void enc_value(enc *e, int idx, int depth, cJSON *parent, const char *key) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: attach(e, parent, key, cJSON_CreateNull()); break;
    case LUA_TBOOLEAN: attach(e, parent, key, cJSON_CreateBool(lua_toboolean(L, idx))); break;
    case LUA_TNUMBER: attach(e, parent, key, number_item(e, idx)); break;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      attach(e, parent, key, string_item(L, s, n));
      break;
    }
    case LUA_TTABLE: enc_table(e, idx, depth, parent, key); break;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) {
        attach(e, parent, key, cJSON_CreateNull());
        break;
      }
      /* fallthrough */
    default: {
      bool tensor = lj_is_tensor(L, idx);
      lj_error(L, "json_encode: %s is a %s; JSON holds tables, strings, numbers and booleans%s", e->path,
               tensor ? "tensor" : lj_typename(L, idx), tensor ? " (use t:totable() or t:item())" : "");
    }
  }
}

/* Pushes cJSON's compact text laid out with two-space indents, one member per line and
 * ": " after keys (the layout of our checkpoints' JSON files). */
static void push_indented(lua_State *L, const char *s) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int depth = 0;
  bool in_string = false;
  for (const char *p = s; *p; p++) {
    char c = *p;
    if (in_string) {
      luaL_addchar(&b, c);
      if (c == '\\') luaL_addchar(&b, *++p);
      else if (c == '"') in_string = false;
      continue;
    }
    bool newline = false;
    switch (c) {
      case '"': in_string = true; luaL_addchar(&b, c); break;
      case '{':
      case '[':
        luaL_addchar(&b, c);
        if (p[1] == '}' || p[1] == ']') luaL_addchar(&b, *++p); /* {} and [] stay closed */
        else depth++, newline = true;
        break;
      case '}':
      case ']':
        depth--;
        luaL_addchar(&b, '\n');
        for (int i = 0; i < depth; i++) luaL_addstring(&b, "  ");
        luaL_addchar(&b, c);
        break;
      case ',': luaL_addchar(&b, c); newline = true; break;
      case ':': luaL_addstring(&b, ": "); break;
      default: luaL_addchar(&b, c);
    }
    if (newline) {
      luaL_addchar(&b, '\n');
      for (int i = 0; i < depth; i++) luaL_addstring(&b, "  ");
    }
  }
  luaL_pushresult(&b);
}

/* json_encode(value, {indent = bool}) -> string */
static int l_json_encode(lua_State *L) {
  static const char *const known[] = {"indent", NULL};
  lua_settop(L, 2);
  lj_check_options(L, 2, known);
  bool indent = lj_opt_bool_field(L, 2, "indent", false);
  enc e = {.L = L, .plen = 5};
  strcpy(e.path, "value");
  e.box = new_box(L);
  enc_value(&e, 1, 0, NULL, NULL);
  e.box->text = cJSON_PrintUnformatted(e.box->root);
  if (!e.box->text) out_of_memory(L);
  if (indent) push_indented(L, e.box->text);
  else lua_pushstring(L, e.box->text);
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
  lj_check_stack(L, 4, "nested too deeply");
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
    return lj_error(L, "%s: %s at line %d, column %d (byte %d): unexpected end of input", fn, what, line, col,
                      (int)pos);
  char near[24];
  size_t k = 0;
  for (size_t i = pos; i < len && k < 20; i++) near[k++] = (s[i] >= 0x20 && s[i] != 0x7f) ? s[i] : ' ';
  near[k] = '\0';
  return lj_error(L, "%s: %s at line %d, column %d (byte %d): near '%s'", fn, what, line, col, (int)pos, near);
}

void lj_json_push(lua_State *L, const char *fn, const char *s, size_t len) {
  tree_box *b = new_box(L);
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
  const char *s = lj_string(L, 1, "text", &len);
  lj_json_push(L, "json_decode", s, len);
  return 1;
}

void lj_open_json(lua_State *L) {
  lj_gc_type(L, TREE_MT, tree_gc);
  static const luaL_Reg fns[] = {{"json_encode", l_json_encode}, {"json_decode", l_json_decode}, {NULL, NULL}};
  lj_setfuncs(L, fns, "");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "json_null");
}
