/* Error reporting (core/error.c): the message of the last failure, clearing, and shapes
 * formatted for messages. */
#include <string.h>

#include "check.h"
#include "jbx_error.h"
#include "jbx_tensor.h"

static void test_messages(void) {
  jbx_clear_error();
  CHECK(strcmp(jbx_last_error(), "unknown error") == 0, "cleared: '%s'", jbx_last_error());
  CHECK(jbx_fail("op: %d of %s", 3, "four") == -1, "jbx_fail returns -1");
  CHECK(strcmp(jbx_last_error(), "op: 3 of four") == 0, "formatted: '%s'", jbx_last_error());
  char long_msg[1000];
  memset(long_msg, 'x', sizeof long_msg - 1);
  long_msg[sizeof long_msg - 1] = '\0';
  jbx_fail("%s", long_msg);
  CHECK(strlen(jbx_last_error()) < sizeof long_msg, "a long message is truncated, not overflowed");
}

static void test_shape_str(void) {
  char buf[160];
  int64_t shape[3] = {4, 1, 16384};
  jbx_tensor *t = jbx_empty(JBX_F32, 3, shape), *s = jbx_scalar(1);
  CHECK(strcmp(jbx_shape_str(t, buf, sizeof buf), "[4, 1, 16384]") == 0, "'%s'", buf);
  CHECK(strcmp(jbx_shape_str(s, buf, sizeof buf), "[]") == 0, "0-dim: '%s'", buf);
  char tiny[6];
  jbx_shape_str(t, tiny, sizeof tiny);
  CHECK(strlen(tiny) < sizeof tiny, "a small buffer is not overflowed: '%s'", tiny);
  jbx_release(t);
  jbx_release(s);
}

int main(void) {
  test_messages();
  test_shape_str();
  return check_summary();
}
