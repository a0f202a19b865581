/* Differentiable tensor ops. Inputs are borrowed; each returns a new tensor (refs = 1)
 * or NULL with jbx_last_error() naming the op, the shapes and what was expected.
 * Binary elementwise ops broadcast as NumPy/PyTorch do. */
#ifndef JBX_OPS_H
#define JBX_OPS_H
#include "jbx_tensor.h"

/* A dim value meaning "reduce over all elements". */
#define JBX_ALL_DIMS (-1000)

/* ---- elementwise (ops/elementwise.c) ---- */
jbx_tensor *jbx_add(jbx_tensor *a, jbx_tensor *b);
jbx_tensor *jbx_sub(jbx_tensor *a, jbx_tensor *b);
jbx_tensor *jbx_mul(jbx_tensor *a, jbx_tensor *b);
jbx_tensor *jbx_div(jbx_tensor *a, jbx_tensor *b);
jbx_tensor *jbx_pow(jbx_tensor *a, jbx_tensor *b);
jbx_tensor *jbx_maximum(jbx_tensor *a, jbx_tensor *b);
jbx_tensor *jbx_minimum(jbx_tensor *a, jbx_tensor *b);
jbx_tensor *jbx_add_scalar(jbx_tensor *a, float s);
jbx_tensor *jbx_mul_scalar(jbx_tensor *a, float s);
jbx_tensor *jbx_pow_scalar(jbx_tensor *a, float p);
jbx_tensor *jbx_neg(jbx_tensor *a);
jbx_tensor *jbx_exp(jbx_tensor *a);
jbx_tensor *jbx_log(jbx_tensor *a);
jbx_tensor *jbx_sqrt(jbx_tensor *a);
jbx_tensor *jbx_abs(jbx_tensor *a);
jbx_tensor *jbx_relu(jbx_tensor *a);
jbx_tensor *jbx_gelu(jbx_tensor *a); /* tanh approximation: the reference's "gelu" activation */
jbx_tensor *jbx_quick_gelu(jbx_tensor *a); /* x sigmoid(1.702 x): its "quick_gelu", the transformer default */
jbx_tensor *jbx_tanh(jbx_tensor *a);
jbx_tensor *jbx_sigmoid(jbx_tensor *a);
jbx_tensor *jbx_clamp(jbx_tensor *a, float lo, float hi); /* use +-INFINITY for one side */
/* Comparisons give float 0/1 masks and are not differentiable. */
jbx_tensor *jbx_gt(jbx_tensor *a, jbx_tensor *b);
jbx_tensor *jbx_lt(jbx_tensor *a, jbx_tensor *b);
jbx_tensor *jbx_eq(jbx_tensor *a, jbx_tensor *b);
/* where(mask != 0, a, b), broadcasting all three; differentiable in a and b. */
jbx_tensor *jbx_where(jbx_tensor *mask, jbx_tensor *a, jbx_tensor *b);
jbx_tensor *jbx_masked_fill(jbx_tensor *a, jbx_tensor *mask, float value);
/* Straight-through helper: returns a + (b - a) detached, i.e. value of b, gradient to a. */
jbx_tensor *jbx_straight_through(jbx_tensor *a, jbx_tensor *b);

/* ---- reductions (ops/reduce.c); dim may be JBX_ALL_DIMS ---- */
jbx_tensor *jbx_sum(jbx_tensor *a, int dim, bool keepdim);
jbx_tensor *jbx_mean(jbx_tensor *a, int dim, bool keepdim);
/* max/min return values; *indices (int32, may be NULL) gets the arg positions. */
jbx_tensor *jbx_max(jbx_tensor *a, int dim, bool keepdim, jbx_tensor **indices);
jbx_tensor *jbx_min(jbx_tensor *a, int dim, bool keepdim, jbx_tensor **indices);
jbx_tensor *jbx_argmax(jbx_tensor *a, int dim, bool keepdim);
jbx_tensor *jbx_argmin(jbx_tensor *a, int dim, bool keepdim);
jbx_tensor *jbx_norm(jbx_tensor *a, int dim, bool keepdim); /* L2 */
jbx_tensor *jbx_logsumexp(jbx_tensor *a, int dim, bool keepdim);
jbx_tensor *jbx_softmax(jbx_tensor *a, int dim);
jbx_tensor *jbx_log_softmax(jbx_tensor *a, int dim);
/* Mean of the k largest values along the last dim, per row (Jukebox's linf). */
jbx_tensor *jbx_topk_mean(jbx_tensor *a, int64_t k);

/* ---- linear algebra (ops/matmul.c): sgemm ---- */
/* [.., n, k] x [.., k, m] -> [.., n, m]; 1-D operands as in torch.matmul; batch broadcast. */
jbx_tensor *jbx_matmul(jbx_tensor *a, jbx_tensor *b);
/* The reference's dense layer (Conv1D) (ops/linear.c): x [..., n_in] (any strides) x
 * w [n_in, n_out] + b [n_out] or NULL -> [..., n_out]; one sgemm, the bias fused. */
jbx_tensor *jbx_linear(jbx_tensor *x, jbx_tensor *w, jbx_tensor *b);
/* Cross-entropy (ops/cross_entropy.c): fused log-softmax + NLL in nats over logits
 * [..., V] with int32 class ids [...] (0-based); MEAN gives a 0-dim mean, NONE the loss
 * per target. Differentiable in the logits. */
typedef enum { JBX_REDUCE_MEAN = 0, JBX_REDUCE_NONE = 1 } jbx_reduction;
jbx_tensor *jbx_cross_entropy(jbx_tensor *logits, jbx_tensor *targets, jbx_reduction reduction);
/* The mean cross-entropy (nats) of x w^T against class ids (ops/linear_cross_entropy.c):
 * x [..., K], w [V, K], targets int32 [...]; the [N, V] logits are never held whole, and
 * their gradient is formed in the forward (differentiable in x and w). */
jbx_tensor *jbx_linear_cross_entropy(jbx_tensor *x, jbx_tensor *w, jbx_tensor *targets);

/* ---- shape ops (ops/shape.c) ---- */
jbx_tensor *jbx_concat(int n, jbx_tensor *const *ts, int dim);
/* Rows of a along dim picked by an int32 index tensor (1-D): embeddings use dim 0. */
jbx_tensor *jbx_index_select(jbx_tensor *a, int dim, jbx_tensor *index);
/* out[i][j] = a[i][index[i][j]] along dim (int32 index with a's ndim). */
jbx_tensor *jbx_gather(jbx_tensor *a, int dim, jbx_tensor *index);
/* Embedding lookup (ops/embedding.c): weight [V, D], int32 ids of any shape -> [..., D]. */
jbx_tensor *jbx_embedding(jbx_tensor *weight, jbx_tensor *ids);

/* ---- neural-network ops ---- */
/* conv1d (ops/conv1d.c): x [B, Cin, L], w [Cout, Cin, K], bias [Cout] or NULL. */
jbx_tensor *jbx_conv1d(jbx_tensor *x, jbx_tensor *w, jbx_tensor *bias, int stride, int padding,
                       int dilation);
/* conv_transpose1d (ops/conv1d.c): x [B, Cin, L], w [Cin, Cout, K] (PyTorch layout). */
jbx_tensor *jbx_conv_transpose1d(jbx_tensor *x, jbx_tensor *w, jbx_tensor *bias, int stride,
                                 int padding, int output_padding);
/* layer_norm over the last dim; weight/bias [D] or NULL. */
jbx_tensor *jbx_layer_norm(jbx_tensor *x, jbx_tensor *weight, jbx_tensor *bias, float eps);

/* Casts between float32 and int32 (not differentiable). */
jbx_tensor *jbx_to_dtype(jbx_tensor *a, jbx_dtype dt);

/* ---- recompute in the backward (ops/recompute.c) ---- */
/* The function jbx_recompute runs: a new tensor from its n inputs, or NULL after jbx_fail. */
typedef jbx_tensor *(*jbx_recompute_fn)(void *ctx, int n, jbx_tensor *const *inputs);
/* out = fn(ctx, inputs) keeping none of fn's activations: the backward runs fn again
 * (the reference's checkpoint_res). watch: tensors fn reads directly (its parameters),
 * which get their gradients in that inner pass. ctx is freed with free_ctx (may be NULL)
 * when the graph no longer needs it. */
jbx_tensor *jbx_recompute(jbx_recompute_fn fn, void *ctx, void (*free_ctx)(void *ctx), int n_in,
                           jbx_tensor *const *inputs, int n_watch, jbx_tensor *const *watch);

#endif
