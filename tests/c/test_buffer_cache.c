/* The buffer cache (core/buffer_cache.c): 64-byte alignment, reuse of a freed buffer
 * by its size class, small buffers passing straight to malloc, and clearing. */
#include <stdint.h>

#include "check.h"
#include "jbx_buffer.h"

static void test_reuse(void) {
  jbx_buffer_cache_clear();
  CHECK(jbx_buffer_cached_bytes() == 0, "empty after clear");
  size_t big = (size_t)1 << 20;
  void *p = jbx_buffer_alloc(big);
  CHECK(p && (uintptr_t)p % 64 == 0, "aligned to 64 bytes");
  jbx_buffer_free(p, big);
  CHECK(jbx_buffer_cached_bytes() >= big, "a freed buffer is cached");
  /* a request a little smaller falls in the same class (4 per power of two) */
  void *q = jbx_buffer_alloc(big - 1000);
  CHECK(q == p, "the cached buffer is handed out again");
  CHECK(jbx_buffer_cached_bytes() == 0, "taken from the cache");
  jbx_buffer_free(q, big - 1000);
  jbx_buffer_cache_clear();
  CHECK(jbx_buffer_cached_bytes() == 0, "clear returns every buffer");
}

static void test_small(void) {
  void *p = jbx_buffer_alloc(100);
  CHECK(p && (uintptr_t)p % 64 == 0, "small buffers are aligned too");
  jbx_buffer_free(p, 100);
  CHECK(jbx_buffer_cached_bytes() == 0, "small buffers are not cached");
}

int main(void) {
  test_reuse();
  test_small();
  return check_summary();
}
