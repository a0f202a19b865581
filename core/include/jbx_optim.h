/* Optimiser kernels: fused Adam, gradient norms for clipping, EMA of weights.
 * Each updates tensors in place and is not recorded by autograd. */
#ifndef JBX_OPTIM_H
#define JBX_OPTIM_H
#include "jbx_tensor.h"

typedef struct jbx_adam_opts {
  float lr, beta1, beta2, eps, weight_decay;
  int64_t step;     /* 1-based step count, for bias correction */
  float grad_scale; /* multiplies the gradient first (clipping); 1 for none */
} jbx_adam_opts;

/* One Adam step on p with moments m, v (same shape, contiguous); p->grad must be set. */
int jbx_adam_step(jbx_tensor *p, jbx_tensor *m, jbx_tensor *v, const jbx_adam_opts *o);
/* Sum of squares of p->grad (0 when p has no gradient), in double. */
double jbx_grad_sumsq(const jbx_tensor *p);
/* ema = decay * ema + (1 - decay) * p */
int jbx_ema_update(jbx_tensor *ema, const jbx_tensor *p, float decay);
#endif
