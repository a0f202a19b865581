/* Thread-local last error message. */
#include "jbx_error.h"

#include <stdarg.h>
#include <stdio.h>

#include "jbx_tensor.h"

static _Thread_local char last_error[512];

int jbx_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return -1;
}

static int message_base; /* set once, when a binding opens; read by any thread */

void jbx_set_message_base(int base) { message_base = base; }

long long jbx_msg_pos(long long zero_based) { return zero_based + message_base; }

const char *jbx_last_error(void) { return last_error[0] ? last_error : "unknown error"; }

void jbx_clear_error(void) { last_error[0] = '\0'; }

const char *jbx_shape_str(const jbx_tensor *t, char *buf, int size) {
  int n = snprintf(buf, (size_t)size, "[");
  for (int d = 0; t && d < t->ndim && n < size; d++)
    n += snprintf(buf + n, (size_t)(size - n), d ? ", %lld" : "%lld", (long long)t->shape[d]);
  if (n < size) snprintf(buf + n, (size_t)(size - n), "]");
  return buf;
}
