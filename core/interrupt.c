/* The Ctrl-C flag of jbx_interrupt.h: one volatile sig_atomic_t, written by a signal
 * handler and read by the loop that polls it (same thread or another: a stale read only
 * delays the stop by one unit of work). */
#include <signal.h>

#include "jbx_interrupt.h"

static volatile sig_atomic_t flag;

void jbx_interrupt_raise(void) { flag = 1; }
bool jbx_interrupt_pending(void) { return flag != 0; }
bool jbx_interrupt_take(void) {
  if (!flag) return false;
  flag = 0;
  return true;
}
void jbx_interrupt_clear(void) { flag = 0; }
