/* File-system work the recipes need and stock Lua lacks: directories and atomic writes. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jbx_atomic_file.h"
#include "lj.h"

typedef struct {
  char **names;
  size_t n;
} name_list;

#define NAMES_MT "jbx.NameList"

/* Frees the names even when a Lua error (out of memory) cuts list_dir short. */
static int names_gc(lua_State *L) {
  name_list *l = lua_touserdata(L, 1);
  for (size_t i = 0; i < l->n; i++) free(l->names[i]);
  free(l->names);
  l->names = NULL;
  l->n = 0;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* list_dir(path) -> sorted array of entry names (no "." or ".."). */
static int l_list_dir(lua_State *L) {
  const char *path = lj_string(L, 1, "path", NULL);
  name_list *l = lua_newuserdatauv(L, sizeof *l, 0);
  l->names = NULL;
  l->n = 0;
  luaL_setmetatable(L, NAMES_MT);
  DIR *d = opendir(path);
  if (!d) return lj_error(L, "list_dir: cannot open '%s': %s", path, strerror(errno));
  size_t cap = 0;
  struct dirent *e;
  bool oom = false;
  while (!oom && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (l->n == cap) {
      char **p = realloc(l->names, (cap = cap ? 2 * cap : 64) * sizeof *p);
      if (!(oom = !p)) l->names = p;
      else break;
    }
    oom = !(l->names[l->n] = strdup(e->d_name));
    if (!oom) l->n++;
  }
  closedir(d);
  if (oom) return lj_error(L, "list_dir: out of memory reading '%s'", path);
  if (l->n) qsort(l->names, l->n, sizeof *l->names, cmp_str); /* names is NULL for an empty folder */
  lua_createtable(L, (int)l->n, 0);
  for (size_t i = 0; i < l->n; i++) {
    lua_pushstring(L, l->names[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* mkdir_p(path): creates path and its parents; an existing directory is fine. */
static int l_mkdir_p(lua_State *L) {
  const char *path = lj_string(L, 1, "path", NULL);
  char buf[4096];
  if (strlen(path) >= sizeof buf) return lj_error(L, "mkdir_p: path too long");
  strcpy(buf, path);
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      struct stat st;
      if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return lj_error(L, "mkdir_p: cannot create '%s': %s", buf, strerror(errno));
      if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return lj_error(L, "mkdir_p: '%s' exists and is not a directory", buf);
      *p = c;
      if (c == '\0') break;
    }
  }
  return 0;
}

/* path_kind(path) -> "file", "dir", "other" or nil when absent. */
static int l_path_kind(lua_State *L) {
  struct stat st;
  if (stat(lj_string(L, 1, "path", NULL), &st) != 0) return 0;
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other");
  return 1;
}

/* fsync_write(path, text): replaces path atomically (core/atomic_file.c). */
static int l_fsync_write(lua_State *L) {
  const char *path = lj_string(L, 1, "path", NULL);
  size_t n;
  const char *s = lj_string(L, 2, "text", &n);
  if (jbx_write_file_atomic(path, s, n) != 0) return lj_error(L, "fsync_write: %s", jbx_last_error());
  return 0;
}

void lj_open_fs(lua_State *L) {
  lj_gc_type(L, NAMES_MT, names_gc);
  static const luaL_Reg fns[] = {{"list_dir", l_list_dir},
                                 {"mkdir_p", l_mkdir_p},
                                 {"path_kind", l_path_kind},
                                 {"fsync_write", l_fsync_write},
                                 {NULL, NULL}};
  lj_setfuncs(L, fns, "");
}
