/* The Ctrl-C flag: raised by a real SIGINT handler, taken once, cleared. */
#include <signal.h>

#include "check.h"
#include "jbx_interrupt.h"

static void on_int(int sig) {
  (void)sig;
  jbx_interrupt_raise();
}

int main(void) {
  jbx_interrupt_clear();
  CHECK(!jbx_interrupt_pending(), "fresh flag is down");
  CHECK(!jbx_interrupt_take(), "nothing to take");
  signal(SIGINT, on_int);
  raise(SIGINT);
  signal(SIGINT, SIG_DFL);
  CHECK(jbx_interrupt_pending(), "the handler raised it");
  CHECK(jbx_interrupt_take(), "taken once");
  CHECK(!jbx_interrupt_pending(), "taking clears it");
  CHECK(!jbx_interrupt_take(), "and only once");
  jbx_interrupt_raise();
  jbx_interrupt_clear();
  CHECK(!jbx_interrupt_pending(), "cleared");
  return check_summary();
}
