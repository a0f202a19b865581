/* The process the binding runs in: clock, threads, deferred Ctrl-C, and the memory policy
 * (malloc tuning, the GC mode, reporting tensor bytes to the GC). */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>
#include <omp.h>

#include "jbx_gemm.h"
#include "lj.h"

/* ------------------------------------------------------------------ memory policy */

/* Bytes Lua cannot see (storage, headers, graph nodes) not yet reported to the GC: a hint
 * accumulator only, so it needs no per-state home. */
static _Thread_local size_t gc_pending;

void lj_gc_account(lua_State *L, size_t bytes) {
  gc_pending += bytes;
  if (gc_pending >= 1024) {
    size_t kb = gc_pending / 1024;
    gc_pending %= 1024;
    lua_gc(L, LUA_GCSTEP, (int)(kb > INT_MAX / 2 ? INT_MAX / 2 : kb));
  }
}

/* Tensors come and go by the thousand, each a large block. With glibc's defaults every
 * block over 128 KB is a fresh mmap (or the heap top is trimmed and regrown), so each new
 * tensor page-faults all its pages: a loop of 1 MB tensors ran 60-150x slower. Keep blocks
 * up to 32 MB on the heap and up to 256 MB of freed heap for reuse. */
static void tune_malloc(void) {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

/* ------------------------------------------------------------------ clock, terminal, memory */

/* clock() -> monotonic seconds, for rates (steps/s). */
static int l_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
  return 1;
}

/* isatty(fd) -> boolean (progress bars redraw only on a terminal). */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)lj_int_in(L, 1, "fd", 0, INT_MAX)));
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

/* ------------------------------------------------------------------ threads */

/* set_threads(n): OpenMP loops and OpenBLAS both use n threads (never more than cores). */
static int l_set_threads(lua_State *L) {
  int n = (int)lj_int_in(L, 1, "n", 1, INT_MAX);
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  return 0;
}

/* num_threads() -> the OpenMP thread count in use. */
static int l_num_threads(lua_State *L) {
  lua_pushinteger(L, omp_get_max_threads());
  return 1;
}

/* gemm_engine() -> "avx512" or "openblas": what the core's matrix products run on. */
static int l_gemm_engine(lua_State *L) {
  lua_pushstring(L, jbx_gemm_engine());
  return 1;
}

/* ------------------------------------------------------------------ deferred Ctrl-C */

/* While on, SIGINT only sets a flag that a loop polls at a safe point (a training step's
 * end), so a checkpoint is never taken from a half-updated state. SIGTERM and SIGUSR1 do
 * the same: that is how a stop reaches the ranks of a data-parallel run (mpirun answers
 * Ctrl-C with SIGTERM to every rank, then SIGKILL after odls_base_sigkill_timeout
 * seconds, and forwards SIGUSR1), and how Slurm ends a job at its time limit. */
static volatile sig_atomic_t interrupt_flag;
static const int deferred_signals[] = {SIGINT, SIGTERM, SIGUSR1};
#define N_DEFERRED (int)(sizeof deferred_signals / sizeof deferred_signals[0])
static struct sigaction previous[N_DEFERRED];
static int deferring;

static void on_sigint(int sig) {
  (void)sig;
  interrupt_flag = 1;
}

static int l_defer_interrupts(lua_State *L) {
  bool on = lj_opt_bool(L, 1, "on", false);
  if (on && !deferring) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < N_DEFERRED; i++) sigaction(deferred_signals[i], &sa, &previous[i]);
    interrupt_flag = 0;
    deferring = 1;
  } else if (!on && deferring) {
    for (int i = 0; i < N_DEFERRED; i++) sigaction(deferred_signals[i], &previous[i], NULL);
    deferring = 0;
  }
  return 0;
}

/* interrupted() -> true once Ctrl-C was pressed while interrupts were deferred. */
static int l_interrupted(lua_State *L) {
  lua_pushboolean(L, interrupt_flag != 0);
  return 1;
}

void lj_open_runtime(lua_State *L) {
  tune_malloc();
  /* lj_gc_account's hints work in incremental mode; in generational mode (the stock
   * lua5.4's choice) young collections ignore them and 1 MB tensors in a loop reach
   * gigabytes. So loading the module selects incremental mode. */
  lua_gc(L, LUA_GCINC, 0, 0, 0);
  static const luaL_Reg fns[] = {{"clock", l_clock},
                                 {"isatty", l_isatty},
                                 {"peak_rss_mb", l_peak_rss_mb},
                                 {"set_threads", l_set_threads},
                                 {"num_threads", l_num_threads},
                                 {"gemm_engine", l_gemm_engine},
                                 {"defer_interrupts", l_defer_interrupts},
                                 {"interrupted", l_interrupted},
                                 {NULL, NULL}};
  lj_setfuncs(L, fns, "");
}
