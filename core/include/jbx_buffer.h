/* 64-byte aligned buffers for tensor storage, reused across steps (buffer_cache.c). */
#ifndef JBX_BUFFER_H
#define JBX_BUFFER_H
#include <stddef.h>

void *jbx_buffer_alloc(size_t nbytes);
/* nbytes must be the size given to jbx_buffer_alloc. */
void jbx_buffer_free(void *p, size_t nbytes);
/* As jbx_buffer_free, but the memory goes back to the system, not into the cache. */
void jbx_buffer_release(void *p, size_t nbytes);
/* Sets nbytes at p to zero. Large ranges hand their whole pages back to the kernel instead
 * of writing them: they read as zeros and take no memory until written again. */
void jbx_buffer_zero(void *p, size_t nbytes);
/* Returns every cached buffer to the system. */
void jbx_buffer_cache_clear(void);
size_t jbx_buffer_cached_bytes(void);
#endif
