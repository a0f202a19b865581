/* A cache of freed tensor buffers, by size class. Training frees and allocates the same
 * sizes every step; fresh pages from the kernel cost a page fault each (measured here:
 * page faults were the largest item of a training step's profile), so reusing them
 * matters more than any kernel. Classes are 4 per power of two (at most 25% slack);
 * small buffers go straight to malloc; the cache holds at most 2 GiB (JBX_CACHE_MB).
 * The cap should exceed what one step frees at once: with 1 GiB the jukebox preset's
 * training step (1.4 GB at its peak) sent the excess back to malloc, and its peak was
 * 1420 MB; with 2 GiB it is 1370 MB (cached buffers are reused, not added to the peak).
 *
 * Buffers of HUGE_BYTES and more (parameter and optimiser arenas) are not cached: they
 * live for the whole run. */
#include "jbx_buffer.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SMALL_BYTES (16u << 10)
#define N_CLASSES 256
#define DEFAULT_CACHE_MB 2048
#define ZERO_BY_PAGES_BYTES ((size_t)128 << 20) /* jbx_buffer_zero: smaller ranges are memset */
#define HUGE_BYTES ((size_t)256 << 20)

/* The cap in bytes: JBX_CACHE_MB from the environment, else DEFAULT_CACHE_MB. */
static size_t cache_max(void) {
  static size_t max;
  if (!max) {
    const char *env = getenv("JBX_CACHE_MB");
    long mb = env ? strtol(env, NULL, 10) : DEFAULT_CACHE_MB;
    max = (size_t)(mb > 0 ? mb : DEFAULT_CACHE_MB) << 20;
  }
  return max;
}

typedef struct cached {
  struct cached *next;
} cached;

static cached *free_lists[N_CLASSES];
static size_t cached_bytes;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Class index and its byte size for a request of n bytes (n > SMALL_BYTES). */
static int size_class(size_t n, size_t *class_bytes) {
  int e = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^e < n <= 2^(e+1) */
  size_t quarter = (size_t)1 << (e - 1);                      /* 2^(e+1) / 4 */
  size_t k = (n - ((size_t)1 << e) + quarter - 1) / quarter;  /* 1..4 quarters above 2^e */
  *class_bytes = ((size_t)1 << e) + k * quarter;
  return e * 4 + (int)k - 1;
}

/* Sizes the cache keeps. */
static int cached_size(size_t n) { return n > SMALL_BYTES && n < HUGE_BYTES; }

/* Buffers of a megabyte and more are mapped by us, so giving one back returns its memory
 * (glibc keeps freed blocks below its mmap threshold in the heap). Under AddressSanitizer
 * everything goes through malloc, which it checks. */
#if defined(__SANITIZE_ADDRESS__)
#define MAP_BYTES SIZE_MAX
#else
#define MAP_BYTES ((size_t)1 << 20)
#endif

static void *sys_alloc(size_t bytes) {
  if (bytes < MAP_BYTES) return aligned_alloc(64, bytes);
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static void sys_free(void *p, size_t bytes) {
  if (bytes < MAP_BYTES) free(p);
  else munmap(p, bytes);
}

/* What a request of n bytes takes from the system: its class's bytes for cached sizes. */
static size_t taken_bytes(size_t n) {
  size_t bytes = (n + 63) / 64 * 64;
  if (cached_size(n)) size_class(n, &bytes);
  return bytes;
}

/* Bytes of the buffers of class c (the inverse of size_class). */
static size_t class_bytes_of(int c) {
  const int e = c / 4, k = c % 4 + 1;
  return ((size_t)1 << e) + (size_t)k * ((size_t)1 << (e - 1));
}

void *jbx_buffer_alloc(size_t n) {
  if (!cached_size(n)) return sys_alloc(taken_bytes(n));
  size_t bytes;
  int c = size_class(n, &bytes);
  pthread_mutex_lock(&lock);
  cached *hit = free_lists[c];
  if (hit) {
    free_lists[c] = hit->next;
    cached_bytes -= bytes;
  }
  pthread_mutex_unlock(&lock);
  return hit ? hit : sys_alloc(bytes);
}

void jbx_buffer_free(void *p, size_t n) {
  if (!p) return;
  if (!cached_size(n)) {
    sys_free(p, taken_bytes(n));
    return;
  }
  size_t bytes;
  int c = size_class(n, &bytes);
  pthread_mutex_lock(&lock);
  int keep = cached_bytes + bytes <= cache_max();
  if (keep) {
    cached *e = p;
    e->next = free_lists[c];
    free_lists[c] = e;
    cached_bytes += bytes;
  }
  pthread_mutex_unlock(&lock);
  if (!keep) sys_free(p, bytes);
}

void jbx_buffer_release(void *p, size_t n) {
  if (p) sys_free(p, taken_bytes(n));
}

void jbx_buffer_zero(void *p, size_t n) {
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), start = (uintptr_t)p, end = start + n;
  const uintptr_t lo = (start + page - 1) / page * page, hi = end / page * page;
  if (n < ZERO_BY_PAGES_BYTES || hi <= lo || madvise((void *)lo, hi - lo, MADV_DONTNEED) != 0) {
    memset(p, 0, n);
    return;
  }
  memset(p, 0, lo - start);
  memset((void *)hi, 0, end - hi);
}

void jbx_buffer_cache_clear(void) {
  pthread_mutex_lock(&lock);
  for (int c = 0; c < N_CLASSES; c++) {
    while (free_lists[c]) {
      cached *e = free_lists[c];
      free_lists[c] = e->next;
      sys_free(e, class_bytes_of(c));
    }
  }
  cached_bytes = 0;
  pthread_mutex_unlock(&lock);
}

size_t jbx_buffer_cached_bytes(void) {
  pthread_mutex_lock(&lock);
  size_t n = cached_bytes;
  pthread_mutex_unlock(&lock);
  return n;
}
