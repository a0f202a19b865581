/* jbx: the Lua 5.4 interpreter with the jukebox modules on its path and jukebox.core
 * preloaded. Command line, `arg`, error reports and the prompt follow the stock `lua`
 * (lua.c), so scripts behave the same under both. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jbx_dist.h"
#include "jbx_interrupt.h"
#include "lj.h"

#ifndef JBX_VERSION
#define JBX_VERSION "0.1.0"
#endif

static const char *progname = "jbx";
static lua_State *global_L;            /* the state the SIGINT handler interrupts */
static volatile sig_atomic_t got_sigint; /* set by the handler; for anyone who polls */

static void print_usage(FILE *f) {
  fprintf(f,
          "usage: jbx [options] [script [args]]\n"
          "Lua 5.4 with the jukebox modules (local jbx = require \"jukebox\").\n"
          "  -e CODE        run the Lua chunk CODE (may repeat; runs before the script)\n"
          "  -l NAME        require library NAME into the global NAME\n"
          "  -i             enter the interactive prompt after the script\n"
          "  -v, --version  print the version\n"
          "  -h, --help     print this help\n"
          "  --             stop handling options\n"
          "  -              run the script read from stdin\n"
          "With no script and no -e, jbx opens an interactive prompt.\n"
          "The script sees its arguments in the global table `arg` (arg[0] is the script)\n"
          "and as `...`. JBX_LUA_PATH (a Lua path template such as \"mylib/?.lua\") is\n"
          "prepended to package.path. Ctrl-C raises the Lua error \"interrupted\", which a\n"
          "recipe may catch with pcall to save its work; a second Ctrl-C ends jbx at once.\n");
}

static void print_version(void) { printf("jbx %s (%s)\n", JBX_VERSION, LUA_RELEASE); }

/* ------------------------------------------------------------------ Ctrl-C */

/* Runs at the next Lua instruction after a SIGINT: turns it into a Lua error, unless a C
 * loop that polls the core's flag (the sampler) already took the request and raised its
 * own "interrupted: ..." error. */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  got_sigint = 0;
  if (!jbx_interrupt_take()) return;
  luaL_error(L, "interrupted");
}

static void set_sigint(void (*handler)(int)) {
  struct sigaction sa;
  sa.sa_handler = handler;
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

/* lua_sethook is safe to call from a signal handler (as lua.c does). */
static void on_sigint(int sig) {
  (void)sig;
  set_sigint(SIG_DFL); /* a second Ctrl-C ends the process */
  got_sigint = 1;
  jbx_interrupt_raise(); /* for C loops that poll between units of work */
  lua_sethook(global_L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* ------------------------------------------------------------------ running chunks */

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Calls the function below narg arguments with the traceback handler and Ctrl-C armed. */
static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  global_L = L;
  jbx_interrupt_clear();
  set_sigint(on_sigint);
  int status = lua_pcall(L, narg, nres, base);
  set_sigint(SIG_DFL);
  lua_remove(L, base);
  return status;
}

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s: %s\n", progname, msg ? msg : "(error object is not a string)");
    fflush(stderr);
    lua_pop(L, 1);
  }
  return status;
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = docall(L, 0, 0);
  return report(L, status);
}

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l NAME: global NAME = require(NAME). */
static int dolibrary(lua_State *L, const char *name) {
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  int status = docall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, name);
  return report(L, status);
}

/* Pushes the script's arguments (arg[1..n]) and returns n. */
static int pushargs(lua_State *L) {
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  int n = (int)luaL_len(L, -1);
  if (!lua_checkstack(L, n + 3)) luaL_error(L, "too many arguments to script");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -n - 1);
  return n;
}

static int handle_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL; /* stdin */
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = docall(L, n, LUA_MULTRET);
  }
  return report(L, status);
}

/* ------------------------------------------------------------------ the prompt */

/* Reads one line (any length) onto the stack, without its newline; 0 at end of input. */
static int pushline(lua_State *L, int first) {
  if (isatty(0)) { /* prompts only for a person at a terminal, not for piped input */
    fputs(first ? "> " : ">> ", stdout);
    fflush(stdout);
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  char chunk[512];
  int got = 0;
  while (fgets(chunk, sizeof chunk, stdin)) {
    got = 1;
    size_t len = strlen(chunk);
    int done = len > 0 && chunk[len - 1] == '\n';
    if (done) chunk[--len] = '\0';
    luaL_addlstring(&b, chunk, len);
    if (done) break;
  }
  luaL_pushresult(&b);
  if (!got) {
    lua_pop(L, 1);
    return 0;
  }
  if (first && lua_tostring(L, -1)[0] == '=') { /* "=expr" as in Lua 5.1-5.3 */
    lua_pushfstring(L, "return %s", lua_tostring(L, -1) + 1);
    lua_remove(L, -2);
  }
  return 1;
}

/* Tries the line on top as an expression ("return " .. line). */
static int addreturn(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK) lua_remove(L, -2); /* drop the modified line */
  else lua_pop(L, 2);                      /* drop the result and the modified line */
  return status;
}

/* A syntax error at <eof> means the chunk continues on the next line. */
static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    const char *eof = "<eof>";
    size_t le = strlen(eof);
    if (lmsg >= le && strcmp(msg + lmsg - le, eof) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

static int multiline(lua_State *L) {
  for (;;) {
    size_t len;
    const char *line = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, line, len, "=stdin");
    if (!incomplete(L, status) || !pushline(L, 0)) return status;
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* Reads a complete statement; -1 at end of input. The chunk is left on the stack. */
static int loadline(lua_State *L) {
  lua_settop(L, 0);
  if (!pushline(L, 1)) return -1;
  int status = addreturn(L);
  if (status != LUA_OK) status = multiline(L);
  lua_remove(L, 1);
  return status;
}

static void print_results(lua_State *L) {
  int n = lua_gettop(L);
  if (n > 0) {
    if (!lua_checkstack(L, LUA_MINSTACK)) luaL_error(L, "too many results to print");
    lua_getglobal(L, "print");
    lua_insert(L, 1);
    if (lua_pcall(L, n, 0, 0) != LUA_OK)
      fprintf(stderr, "%s: error calling 'print' (%s)\n", progname, lua_tostring(L, -1));
  }
}

static void repl(lua_State *L) {
  int tty = isatty(0);
  if (tty) print_version();
  int status;
  while ((status = loadline(L)) != -1) {
    if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK) print_results(L);
    else report(L, status);
  }
  lua_settop(L, 0);
  if (tty) {
    fputc('\n', stdout);
    fflush(stdout);
  }
}

/* ------------------------------------------------------------------ start-up */

/* package.path: JBX_LUA_PATH, then the jukebox modules, then the default; and
 * package.preload["jukebox.core"] = luaopen_jukebox_core. */
static void setup_package(lua_State *L) {
  lua_getglobal(L, "package");
  const char *extra = getenv("JBX_LUA_PATH");
  lua_getfield(L, -1, "path");
  const char *old = lua_tostring(L, -1);
  lua_pushfstring(L, "%s%s%s/?.lua;%s/?/init.lua;%s", extra && *extra ? extra : "", extra && *extra ? ";" : "",
                  JBX_LUA_DIR, JBX_LUA_DIR, old ? old : "");
  lua_setfield(L, -3, "path");
  lua_pop(L, 1);
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_jukebox_core);
  lua_setfield(L, -2, "jukebox.core");
  lua_pop(L, 2);
}

/* arg[0] = script, arg[1..] = its arguments, negative indices for jbx and its options. */
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
  if (script == argc) script = 0; /* no script: arg[0] = the interpreter */
  int narg = argc - (script + 1);
  lua_createtable(L, narg > 0 ? narg : 0, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

enum { HAS_E = 1, HAS_I = 2, HAS_V = 4, HAS_L = 8, HAS_H = 16, BAD = 32 };

/* Scans the options; returns flags and sets *first to the script's index (argc if none). */
static int collect_args(char **argv, int argc, int *first) {
  int flags = 0, i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    *first = i;
    if (a[0] != '-') return flags; /* the script */
    if (!strcmp(a, "-")) return flags;
    if (!strcmp(a, "--")) {
      *first = i + 1;
      return flags;
    }
    if (!strcmp(a, "-e") || !strcmp(a, "-l")) {
      flags |= a[1] == 'e' ? HAS_E : HAS_L;
      if (++i >= argc) return BAD;
    } else if (!strncmp(a, "-e", 2) || !strncmp(a, "-l", 2)) {
      flags |= a[1] == 'e' ? HAS_E : HAS_L;
    } else if (!strcmp(a, "-i")) {
      flags |= HAS_I | HAS_V;
    } else if (!strcmp(a, "-v") || !strcmp(a, "--version")) {
      flags |= HAS_V;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      flags |= HAS_H;
    } else {
      *first = -i; /* the bad option */
      return BAD;
    }
  }
  *first = argc;
  return flags;
}

/* Runs the -e and -l options in order. */
static int run_args(lua_State *L, char **argv, int n) {
  for (int i = 1; i < n; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || (a[1] != 'e' && a[1] != 'l')) continue;
    const char *extra = a[2] ? a + 2 : argv[++i];
    int status = a[1] == 'e' ? dostring(L, extra, "=(command line)") : dolibrary(L, extra);
    if (status != LUA_OK) return 0;
  }
  return 1;
}

/* os.exit(status, close) that first ends MPI as jbx_dist_finish says: cleanly on a zero
 * status, at once otherwise (mpirun then ends the other ranks). */
static int os_exit(lua_State *L) {
  int status = lua_isboolean(L, 1) ? !lua_toboolean(L, 1) : (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
  jbx_dist_finish(status);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 0);
  return 0;
}

static void wrap_os_exit(lua_State *L) {
  lua_getglobal(L, "os");
  lua_getfield(L, -1, "exit");
  lua_pushcclosure(L, os_exit, 1);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
}

/* Everything runs inside a protected call so memory errors are reported, not fatal. */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  int script = argc;
  int flags = collect_args(argv, argc, &script);
  if (flags == BAD) {
    if (script < 0) fprintf(stderr, "%s: unrecognized option '%s'\n", progname, argv[-script]);
    else fprintf(stderr, "%s: '%s' needs an argument\n", progname, argv[argc - 1]);
    print_usage(stderr);
    return 0;
  }
  if (flags & HAS_H) {
    print_usage(stdout);
    lua_pushboolean(L, 1);
    return 1;
  }
  luaL_checkversion(L);
  luaL_openlibs(L);
  wrap_os_exit(L);
  setup_package(L);
  create_arg_table(L, argv, argc, script);
  if (flags & HAS_V) print_version();
  if (!run_args(L, argv, script)) return 0;
  if (script < argc && handle_script(L, argv + script) != LUA_OK) return 0;
  if (flags & HAS_I) repl(L);
  else if (script == argc && !(flags & (HAS_E | HAS_V | HAS_L))) repl(L);
  lua_pushboolean(L, 1);
  return 1;
}

/* OpenMP threads that spin-wait between parallel regions steal the cores OpenBLAS and
 * other processes need: on a busy 2-core machine a 2-thread evaluation ran 10-20x slower
 * than with passive waiting (measured). libgomp reads its settings when it loads, before
 * main, so when the user has not chosen a policy we set it and start ourselves again. */
static void prefer_passive_openmp(char **argv) {
  if (getenv("OMP_WAIT_POLICY")) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);
  /* exec failed (no /proc): go on with the default policy */
}

int main(int argc, char **argv) {
  prefer_passive_openmp(argv);
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "%s: cannot create state: not enough memory\n", progname);
    return EXIT_FAILURE;
  }
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int status = lua_pcall(L, 2, 1, 0);
  int ok = lua_toboolean(L, -1);
  report(L, status);
  lua_close(L);
  int rc = (ok && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
  jbx_dist_finish(rc);
  return rc;
}
