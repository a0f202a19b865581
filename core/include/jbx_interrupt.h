/* A process-wide Ctrl-C flag that long C loops poll between units of work (the sampler
 * between tokens). A SIGINT handler raises it (async-signal-safe: one sig_atomic_t
 * store); whoever acts on it takes it, so a request is acted on once. The core installs
 * no handler: the jbx executable's does (lua/bind/main.c), and deferred interrupts
 * (core.defer_interrupts) do not raise it, so a deferring loop is not cut short. */
#ifndef JBX_INTERRUPT_H
#define JBX_INTERRUPT_H
#include <stdbool.h>

void jbx_interrupt_raise(void);   /* from a signal handler, or a test */
bool jbx_interrupt_pending(void); /* raised and not yet taken */
bool jbx_interrupt_take(void);    /* pending? and clears it */
void jbx_interrupt_clear(void);

#endif
