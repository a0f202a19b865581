/* System helpers the recipes need and stock Lua lacks: files, clock, threads, Ctrl-C. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <signal.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>
#include <omp.h>

#include "lj.h"

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* list_dir(path) -> sorted array of entry names (no "." or ".."). */
static int l_list_dir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (!d) return luaL_error(L, "list_dir: cannot open '%s': %s", path, strerror(errno));
  size_t n = 0, cap = 64;
  char **names = malloc(cap * sizeof *names);
  struct dirent *e;
  while (names && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (n == cap) {
      char **p = realloc(names, (cap *= 2) * sizeof *names);
      if (!p) break;
      names = p;
    }
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  if (!names) return luaL_error(L, "list_dir: out of memory");
  qsort(names, n, sizeof *names, cmp_str);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
    free(names[i]);
  }
  free(names);
  return 1;
}

/* mkdir_p(path): creates path and its parents; an existing directory is fine. */
static int l_mkdir_p(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[4096];
  if (strlen(path) >= sizeof buf) return luaL_error(L, "mkdir_p: path too long");
  strcpy(buf, path);
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      struct stat st;
      if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return luaL_error(L, "mkdir_p: cannot create '%s': %s", buf, strerror(errno));
      if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return luaL_error(L, "mkdir_p: '%s' exists and is not a directory", buf);
      *p = c;
      if (c == '\0') break;
    }
  }
  return 0;
}

/* path_kind(path) -> "file", "dir", "other" or nil when absent. */
static int l_path_kind(lua_State *L) {
  struct stat st;
  if (stat(luaL_checkstring(L, 1), &st) != 0) return 0;
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other");
  return 1;
}

/* clock() -> monotonic seconds, for rates (steps/s). */
static int l_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
  return 1;
}

/* isatty(fd) -> boolean (progress bars redraw only on a terminal). */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* peak_rss_mb() -> the process's peak resident memory in MB (VmHWM). */
static int l_peak_rss_mb(lua_State *L) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  double mb = 0;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmHWM:", 6)) mb = atof(line + 6) / 1024.0;
  if (f) fclose(f);
  lua_pushnumber(L, mb);
  return 1;
}

/* set_threads(n): OpenMP loops and OpenBLAS both use n threads (never more than cores). */
static int l_set_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 1) return luaL_error(L, "set_threads: need at least 1 thread, got %d", (int)n);
  omp_set_num_threads((int)n);
  openblas_set_num_threads((int)n);
  return 0;
}

/* num_threads() -> the OpenMP thread count in use. */
static int l_num_threads(lua_State *L) {
  lua_pushinteger(L, omp_get_max_threads());
  return 1;
}

/* Deferred Ctrl-C: while on, SIGINT only sets a flag that a loop polls at a safe point
 * (a training step's end), so a checkpoint is never taken from a half-updated state. */
static volatile sig_atomic_t interrupt_flag;
static struct sigaction previous_sigint;
static int deferring;

static void on_sigint(int sig) {
  (void)sig;
  interrupt_flag = 1;
}

static int l_defer_interrupts(lua_State *L) {
  int on = lua_toboolean(L, 1);
  if (on && !deferring) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &previous_sigint);
    interrupt_flag = 0;
    deferring = 1;
  } else if (!on && deferring) {
    sigaction(SIGINT, &previous_sigint, NULL);
    deferring = 0;
  }
  return 0;
}

/* interrupted() -> true once Ctrl-C was pressed while interrupts were deferred. */
static int l_interrupted(lua_State *L) {
  lua_pushboolean(L, interrupt_flag != 0);
  return 1;
}

void lj_open_fs(lua_State *L) {
  static const luaL_Reg fns[] = {{"list_dir", l_list_dir}, {"mkdir_p", l_mkdir_p},
                                 {"path_kind", l_path_kind}, {"clock", l_clock},
                                 {"isatty", l_isatty},       {"peak_rss_mb", l_peak_rss_mb},
                                 {"set_threads", l_set_threads}, {"num_threads", l_num_threads},
                                 {"defer_interrupts", l_defer_interrupts},
                                 {"interrupted", l_interrupted},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
