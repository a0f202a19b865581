/* A cache of freed tensor buffers, by size class. Training frees and allocates the same
 * sizes every step; fresh pages from the kernel cost a page fault each (measured here:
 * page faults were the largest item of a training step's profile), so reusing them
 * matters more than any kernel. Classes are 4 per power of two (at most 25% slack);
 * small buffers go straight to malloc; the cache holds at most 2 GiB (JBX_CACHE_MB).
 * The cap should exceed what one step frees at once: with 1 GiB the jukebox preset's
 * training step (1.4 GB at its peak) sent the excess back to malloc, and its peak was
 * 1420 MB; with 2 GiB it is 1370 MB (cached buffers are reused, not added to the peak). */
#include "jbx_buffer.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define SMALL_BYTES (16u << 10)
#define N_CLASSES 256
#define DEFAULT_CACHE_MB 2048

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

void *jbx_buffer_alloc(size_t n) {
  if (n <= SMALL_BYTES) return aligned_alloc(64, (n + 63) / 64 * 64);
  size_t bytes;
  int c = size_class(n, &bytes);
  if (c < N_CLASSES) {
    pthread_mutex_lock(&lock);
    cached *hit = free_lists[c];
    if (hit) {
      free_lists[c] = hit->next;
      cached_bytes -= bytes;
    }
    pthread_mutex_unlock(&lock);
    if (hit) return hit;
  }
  return aligned_alloc(64, bytes);
}

void jbx_buffer_free(void *p, size_t n) {
  if (!p) return;
  if (n <= SMALL_BYTES) {
    free(p);
    return;
  }
  size_t bytes;
  int c = size_class(n, &bytes);
  pthread_mutex_lock(&lock);
  int keep = c < N_CLASSES && cached_bytes + bytes <= cache_max();
  if (keep) {
    cached *e = p;
    e->next = free_lists[c];
    free_lists[c] = e;
    cached_bytes += bytes;
  }
  pthread_mutex_unlock(&lock);
  if (!keep) free(p);
}

void jbx_buffer_cache_clear(void) {
  pthread_mutex_lock(&lock);
  for (int c = 0; c < N_CLASSES; c++) {
    while (free_lists[c]) {
      cached *e = free_lists[c];
      free_lists[c] = e->next;
      free(e);
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
