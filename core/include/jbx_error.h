/* Error reporting for the core: fallible functions return NULL or a negative status
 * and leave a one-line message readable with jbx_last_error() (thread-local). */
#ifndef JBX_ERROR_H
#define JBX_ERROR_H

/* printf-style; always returns -1 so callers can `return jbx_fail(...)`. */
int jbx_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *jbx_last_error(void);
void jbx_clear_error(void);

/* Dims, and positions along a dim, in messages count from a base: 0 for C callers (the
 * default), 1 once the Lua binding sets it, since Lua users write 1-based dims and
 * positions. Values held in tensors (indices, codes) are 0-based everywhere. */
void jbx_set_message_base(int base);
/* A 0-based dim or position as the user counts it, for a message. */
long long jbx_msg_pos(long long zero_based);

/* Formats a shape as "[4, 1, 16384]" into buf (size >= 128 is enough for 8 dims). */
struct jbx_tensor;
const char *jbx_shape_str(const struct jbx_tensor *t, char *buf, int size);

#endif
