/* The op kit (internal to core): the plumbing every op file shares, so each op's file
 * holds only its checks, its kernels and its backward. Recording a node with typed
 * parameters is public (jbx_record_params, JBX_NODE_PARAMS in jbx_tensor.h). */
#ifndef JBX_OP_KIT_H
#define JBX_OP_KIT_H
#include "jbx_error.h"
#include "jbx_tensor.h"

/* A contiguous copy (or a retain, when t already is) that is not recorded on the graph:
 * for ops that only read t's data. NULL gives NULL, so optional inputs pass through. */
jbx_tensor *jbx_plain(jbx_tensor *t);

/* Hands the gradient g to t (jbx_accum_grad) and releases g. A NULL t takes nothing
 * (0); a NULL g for a t means computing it failed (-1); an empty g carries nothing and
 * is dropped (its storage may be NULL). */
int jbx_give_grad(jbx_tensor *t, jbx_tensor *g);

/* The end of a backward with several gradients: gs[k] (NULL: not wanted) goes to ts[k].
 * When rc < 0 (the gradients were not computed) they are released instead. Every
 * gradient is released either way. Returns 0 or -1. */
int jbx_give_grads(int rc, int n, jbx_tensor *const *ts, jbx_tensor *const *gs);

/* True when t is given and wants a gradient. */
static inline bool jbx_wants_grad(const jbx_tensor *t) { return t && t->requires_grad; }

/* 0 when t is NULL or float32; else -1 with "<op>: <what> must be float32, got int32". */
int jbx_check_f32(const char *op, const char *what, const jbx_tensor *t);

#endif
