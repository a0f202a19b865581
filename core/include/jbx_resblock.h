/* The residual block of Jukebox's Resnet1D as one fused, differentiable op:
 *   y = x + conv1d(relu(conv1d(relu(x), w3, b3, padding = d, dilation = d)), w1, b1)
 * For the backward it keeps its input and recomputes the block's hidden activation
 * h = relu(conv1d(relu(x), w3, b3)), or keeps h too (see core/ops/resblock.c). */
#ifndef JBX_RESBLOCK_H
#define JBX_RESBLOCK_H
#include "jbx_tensor.h"

/* x [B, C, L], w3 [S, C, 3], b3 [S] or NULL, w1 [C, S, 1], b1 [C] or NULL, dilation >= 1.
 * Returns y [B, C, L], or NULL with a message naming res_conv_block and the shapes. */
jbx_tensor *jbx_res_conv_block(jbx_tensor *x, jbx_tensor *w3, jbx_tensor *b3, jbx_tensor *w1,
                               jbx_tensor *b1, int dilation);
/* recompute = false keeps h [B, S, L] for the backward: faster, one more activation. */
jbx_tensor *jbx_res_conv_block_ex(jbx_tensor *x, jbx_tensor *w3, jbx_tensor *b3, jbx_tensor *w1,
                                  jbx_tensor *b1, int dilation, bool recompute);

#endif
