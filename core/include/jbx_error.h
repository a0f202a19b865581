/* Error reporting for the core: fallible functions return NULL or a negative status
 * and leave a one-line message readable with jbx_last_error() (thread-local). */
#ifndef JBX_ERROR_H
#define JBX_ERROR_H

/* printf-style; always returns -1 so callers can `return jbx_fail(...)`. */
int jbx_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *jbx_last_error(void);
void jbx_clear_error(void);

/* Formats a shape as "[4, 1, 16384]" into buf (size >= 128 is enough for 8 dims). */
struct jbx_tensor;
const char *jbx_shape_str(const struct jbx_tensor *t, char *buf, int size);

#endif
