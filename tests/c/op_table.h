/* The table of differentiable ops behind every C gradient check (test_gradcheck.c runs
 * it). A row names the op, its inputs (shape, how values are drawn, how input 0 is viewed)
 * and a sweep: the standard set of variants the op is checked over (broadcast shapes,
 * memory layouts, reduced dims). Checking a new op is one row here, plus a two-line
 * forward when it takes arguments beyond its inputs. */
#ifndef JBX_OP_TABLE_H
#define JBX_OP_TABLE_H
#include <math.h>

#include "jbx_ops.h"
#include "jbx_resblock.h"
#include "jbx_stft.h"
#include "jbx_vq.h"
#include "jbx_attention.h"

#define OT_MAX_IN 6

/* How an input's values are drawn: N(0, scale^2), then reshaped for the op's domain. */
typedef enum {
  GEN_NORMAL,
  GEN_POSITIVE, /* |x| + 0.5: away from log/sqrt/pow poles */
  GEN_GRID,     /* on the lattice 0.3 k + grid: away from kinks (abs, relu, clamp) */
  GEN_AWAY,     /* |x| >= 0.5 keeps 1/x's curvature small for the differences */
  GEN_DISTINCT, /* a shuffle of distinct values 0.05 apart: no ties for max/min/topk */
} gen_kind;

/* How an input is viewed before the op: strided and non-contiguous cases. */
typedef enum {
  VIEW_NONE,
  VIEW_T01,    /* transpose dims 0 and 1 */
  VIEW_T02,    /* transpose dims 0 and 2 */
  VIEW_TLAST,  /* transpose the last two dims */
  VIEW_NARROW, /* narrow dim 0 to [1, size) */
} view_kind;

typedef struct {
  int ndim; /* -1: the input is absent (NULL) */
  int64_t shape[4];
  gen_kind gen;
  float scale; /* 0 means 1 */
  float grid;  /* GEN_GRID's offset */
  view_kind view;
  bool constant; /* does not require grad: the others must still be right */
} in_spec;

/* The op's arguments beyond its inputs; sweeps set dim and keepdim. */
typedef struct {
  int dim, i[3];
  bool keepdim;
  float p[2];
  jbx_tensor *aux; /* an index or mask built from the row's aux data */
} op_args;

typedef jbx_tensor *(*op_forward)(jbx_tensor **in, const op_args *a);

typedef enum {
  SWEEP_ONE,       /* the row as written */
  SWEEP_BROADCAST, /* binary: six shape pairs (broadcast, 0-dim, strided), then b constant */
  SWEEP_LAYOUTS,   /* unary on [3, 4]: contiguous, transposed, narrowed */
  SWEEP_REDUCE,    /* [3, 4, 5]: dims 0, 1, 2, -1, all x keepdim x transposed */
  SWEEP_DIMS,      /* [3, 4, 5]: dims 0, 1, 2, -1 x transposed (softmax-like) */
  SWEEP_TRANSPOSED /* the row, then input 0 transposed (dims 0, 2) */
} sweep_kind;

/* Data of an aux tensor: int32 when ints is set, else float. */
typedef struct {
  int ndim;
  int64_t shape[3];
  const int32_t *ints;
  const float *floats;
} aux_spec;

typedef struct {
  const char *name;
  op_forward fn;
  int arity;
  in_spec in[OT_MAX_IN];
  op_args args;
  sweep_kind sweep;
  aux_spec aux;
  uint64_t seed;   /* 0: a hash of the name, so rows do not depend on their order */
  double eps, tol; /* 0: the defaults 1e-2 and 2e-3 */
  bool richardson; /* sharp curvature (|STFT| near small bins): differences at eps and
                      eps / 2, combined to cancel the eps^2 term */
} op_row;

/* ---------------------------------------------------------------- forwards */

#define BIN(name, call) \
  static jbx_tensor *name(jbx_tensor **in, const op_args *a) { (void)a; return call(in[0], in[1]); }
BIN(f_add, jbx_add)
BIN(f_sub, jbx_sub)
BIN(f_mul, jbx_mul)
BIN(f_div, jbx_div)
BIN(f_pow, jbx_pow)
BIN(f_maximum, jbx_maximum)
BIN(f_minimum, jbx_minimum)
BIN(f_matmul, jbx_matmul)
static jbx_tensor *f_linear(jbx_tensor **in, const op_args *a) { (void)a; return jbx_linear(in[0], in[1], in[2]); }
/* cross_entropy against the row's int32 aux targets; i[0] = 1: reduction none */
static jbx_tensor *f_cross_entropy(jbx_tensor **in, const op_args *a) {
  return jbx_cross_entropy(in[0], a->aux, a->i[0] ? JBX_REDUCE_NONE : JBX_REDUCE_MEAN);
}
/* linear_cross_entropy against the row's int32 aux targets: x [..., K], w [V, K] */
static jbx_tensor *f_linear_cross_entropy(jbx_tensor **in, const op_args *a) {
  return jbx_linear_cross_entropy(in[0], in[1], a->aux);
}
#define UN(name, expr) \
  static jbx_tensor *name(jbx_tensor **in, const op_args *a) { (void)a; return expr; }
UN(f_add_scalar, jbx_add_scalar(in[0], a->p[0]))
UN(f_mul_scalar, jbx_mul_scalar(in[0], a->p[0]))
UN(f_pow_scalar, jbx_pow_scalar(in[0], a->p[0]))
UN(f_neg, jbx_neg(in[0]))
UN(f_exp, jbx_exp(in[0]))
UN(f_log, jbx_log(in[0]))
UN(f_sqrt, jbx_sqrt(in[0]))
UN(f_abs, jbx_abs(in[0]))
UN(f_relu, jbx_relu(in[0]))
UN(f_gelu, jbx_gelu(in[0]))
UN(f_quick_gelu, jbx_quick_gelu(in[0]))
UN(f_tanh, jbx_tanh(in[0]))
UN(f_sigmoid, jbx_sigmoid(in[0]))
UN(f_clamp, jbx_clamp(in[0], a->p[0], a->p[1]))
UN(f_where, jbx_where(a->aux, in[0], in[1]))
UN(f_masked_fill, jbx_masked_fill(in[0], a->aux, 3.5f))
UN(f_sum, jbx_sum(in[0], a->dim, a->keepdim))
UN(f_mean, jbx_mean(in[0], a->dim, a->keepdim))
UN(f_max, jbx_max(in[0], a->dim, a->keepdim, NULL))
UN(f_min, jbx_min(in[0], a->dim, a->keepdim, NULL))
UN(f_norm, jbx_norm(in[0], a->dim, a->keepdim))
UN(f_logsumexp, jbx_logsumexp(in[0], a->dim, a->keepdim))
UN(f_softmax, jbx_softmax(in[0], a->dim))
UN(f_log_softmax, jbx_log_softmax(in[0], a->dim))
UN(f_topk_mean, jbx_topk_mean(in[0], a->i[0]))
UN(f_layer_norm, jbx_layer_norm(in[0], in[1], in[2], 1e-5f))
UN(f_concat, jbx_concat(a->i[0], in, a->dim))
UN(f_index_select, jbx_index_select(in[0], a->dim, a->aux))
UN(f_gather, jbx_gather(in[0], a->dim, a->aux))
UN(f_embedding, jbx_embedding(in[0], a->aux))
UN(f_conv1d, jbx_conv1d(in[0], in[1], in[2], a->i[0], a->i[1], a->i[2]))
UN(f_conv_transpose1d, jbx_conv_transpose1d(in[0], in[1], in[2], a->i[0], a->i[1], a->i[2]))
UN(f_res_block, jbx_res_conv_block_ex(in[0], in[1], in[2], in[3], in[4], a->i[0], a->i[1] == 0))
UN(f_stft_mag, jbx_stft_mag(in[0], a->i[0], a->i[1], a->i[2]))
UN(f_clone, jbx_clone(in[0]))
UN(f_vq_dequantise, jbx_vq_dequantise(in[0], a->aux))

/* A small composite mirroring a layer: tanh(x * w + b). */
static jbx_tensor *f_tanh_affine(jbx_tensor **in, const op_args *a) {
  jbx_tensor *xw = jbx_mul(in[0], in[1]), *z = jbx_add(xw, in[2]), *out = jbx_tanh(z);
  jbx_release(xw), jbx_release(z);
  return out;
}
/* x x^T: the same leaf on both sides gets both gradients. */
static jbx_tensor *f_gram(jbx_tensor **in, const op_args *a) {
  jbx_tensor *t = jbx_transpose(in[0], 0, 1), *out = jbx_matmul(in[0], t);
  jbx_release(t);
  return out;
}
/* The differentiable views, each composed with another so every path is taken. */
static jbx_tensor *f_transpose_view(jbx_tensor **in, const op_args *a) {
  jbx_tensor *t = jbx_transpose(in[0], 0, 1), *v = jbx_view(t, 1, (int64_t[]){-1});
  jbx_release(t);
  return v;
}
static jbx_tensor *f_narrow_expand(jbx_tensor **in, const op_args *a) {
  jbx_tensor *n = jbx_narrow(in[0], 1, 1, 2), *e = jbx_expand(n, 3, (int64_t[]){3, 2, 2});
  jbx_release(n);
  return e;
}
static jbx_tensor *f_permute_clone(jbx_tensor **in, const op_args *a) {
  jbx_tensor *p = jbx_permute(in[0], (int[]){2, 0, 1}), *c = jbx_clone(p);
  jbx_release(p);
  return c;
}
static jbx_tensor *f_select_squeeze_all(jbx_tensor **in, const op_args *a) {
  jbx_tensor *r = jbx_select(in[0], 0, -1), *s = jbx_squeeze_all(r);
  jbx_release(r);
  return s;
}
UN(f_expand_as, jbx_expand_as(in[0], a->aux))
static jbx_tensor *f_unsqueeze_squeeze(jbx_tensor **in, const op_args *a) {
  jbx_tensor *u = jbx_unsqueeze(in[0], 1), *s = jbx_squeeze(u, 1);
  jbx_release(u);
  return s;
}
/* attention: i[0] = attn_func, i[1] = block_ctx */
static jbx_tensor *f_attention(jbx_tensor **in, const op_args *a) {
  jbx_attn_opts o = {.attn_func = a->i[0], .block_ctx = a->i[1]};
  return jbx_attention(in[0], in[1], in[2], &o);
}
/* Attention: q, k, v [B, H, T, d] (q viewed by vw: VIEW_T01 reads [H, B, T, d] as
 * [B, H, T, d], non-contiguous); i = attn_func, block_ctx. */
#define ATTN(nm, B, H, T, d, func, bc, vw, sd)                                               \
  {nm, f_attention, 3,                                                                      \
   {{.ndim = 4, .shape = {vw == VIEW_T01 ? H : B, vw == VIEW_T01 ? B : H, T, d}, .view = vw}, \
    IN(4, B, H, T, d), IN(4, B, H, T, d)},                                                  \
   {.i = {func, bc}}, .seed = sd}

/* ---------------------------------------------------------------- rows */

#define IN(nd, ...) {.ndim = nd, .shape = {__VA_ARGS__}}
#define IN_G(nd, g, ...) {.ndim = nd, .shape = {__VA_ARGS__}, .gen = g}
#define SCALAR_IN {.ndim = 0}
#define ABSENT {.ndim = -1}
#define UNARY(nm, f, g, ...) \
  {nm, f, 1, {{.gen = g, .scale = 1.2f, .grid = 0.05f}}, {.p = {__VA_ARGS__}}, SWEEP_LAYOUTS}
#define REDUCE(nm, f, g) {nm, f, 1, {{.gen = g}}, {0}, SWEEP_REDUCE}
#define BINARY(nm, f, ga, gb, sb) \
  {nm, f, 2, {{.gen = ga, .grid = 0.05f}, {.gen = gb, .grid = 0.2f, .scale = sb}}, {0}, SWEEP_BROADCAST}
/* conv: x [B, Cin, L], weight (scaled 0.5), bias or absent; i = stride, padding, extra. */
#define CONV(nm, f, x0, x1, x2, w0, w1, w2, bias, s, p, e)                                  \
  {nm, f, 3, {IN(3, x0, x1, x2), {.ndim = 3, .shape = {w0, w1, w2}, .scale = 0.5f},        \
              {.ndim = bias ? 1 : -1, .shape = {bias}, .scale = 0.5f}},                     \
   {.i = {s, p, e}}, .seed = 41}
/* The fused residual block: x [B, C, L], w3 [S, C, 3], b3 [S], w1 [C, S, 1], b1 [C]. */
#define RES(nm, B, C, S, L, d, keep_h, sd)                                                    \
  {nm, f_res_block, 5, {IN(3, B, C, L), {.ndim = 3, .shape = {S, C, 3}, .scale = 0.33f},    \
                        {.ndim = 1, .shape = {S}, .scale = 0.1f},                           \
                        {.ndim = 3, .shape = {C, S, 1}, .scale = 0.5f},                     \
                        {.ndim = 1, .shape = {C}, .scale = 0.1f}},                          \
   {.i = {d, keep_h}}, .seed = sd, .eps = 1e-3, .tol = 3e-3}
#define STFT(nm, nd, L, n_fft, hop, win, sd)                                                \
  {nm, f_stft_mag, 1, {{.ndim = nd, .shape = {nd == 2 ? 2 : L, L}}}, {.i = {n_fft, hop, win}}, \
   .seed = sd, .tol = 5e-3, .richardson = true}

static const int32_t IDX_SELECT1[] = {1, 3, 1, 0, 1}, IDX_SELECT0[] = {2, 2, 0, 2};
static const int32_t IDX_GATHER1[] = {0, 3, 3, 1, 0, 2, 2, 2, 1, 0};
static const int32_t IDX_GATHER0[] = {2, 0, 2, 2, 1, 0, 0, 1}, IDS_EMBED[] = {4, 0, 4, 4, 2, 0};
static const int32_t MASK_INT[] = {0, 1, 1};
static const float MASK_FLOAT[] = {1, 0, 2, 0};
static const float SIX_FLOATS[] = {1, 2, 3, 4, 5, 6};

/* Rows leave trailing fields out: they default to zero. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const op_row OP_TABLE[] = {
    /* elementwise.c: binary ops over broadcast shapes, unary ops over layouts */
    BINARY("add", f_add, GEN_NORMAL, GEN_NORMAL, 1),
    BINARY("sub", f_sub, GEN_NORMAL, GEN_NORMAL, 1),
    BINARY("mul", f_mul, GEN_NORMAL, GEN_NORMAL, 1),
    BINARY("div", f_div, GEN_NORMAL, GEN_AWAY, 1),
    BINARY("pow", f_pow, GEN_POSITIVE, GEN_NORMAL, 0.5f),
    BINARY("maximum", f_maximum, GEN_GRID, GEN_GRID, 1),
    BINARY("minimum", f_minimum, GEN_GRID, GEN_GRID, 1),
    UNARY("add_scalar", f_add_scalar, GEN_NORMAL, 1.5f),
    UNARY("mul_scalar", f_mul_scalar, GEN_NORMAL, -2.5f),
    UNARY("pow_scalar 2", f_pow_scalar, GEN_NORMAL, 2),
    UNARY("pow_scalar 3", f_pow_scalar, GEN_NORMAL, 3),
    UNARY("pow_scalar 1", f_pow_scalar, GEN_NORMAL, 1),
    UNARY("pow_scalar 0", f_pow_scalar, GEN_NORMAL, 0),
    UNARY("pow_scalar -1", f_pow_scalar, GEN_POSITIVE, -1),
    UNARY("pow_scalar 0.5", f_pow_scalar, GEN_POSITIVE, 0.5f),
    UNARY("pow_scalar -0.5", f_pow_scalar, GEN_POSITIVE, -0.5f),
    UNARY("pow_scalar 1.7", f_pow_scalar, GEN_POSITIVE, 1.7f),
    UNARY("neg", f_neg, GEN_NORMAL, 0),
    UNARY("exp", f_exp, GEN_NORMAL, 0),
    UNARY("log", f_log, GEN_POSITIVE, 0),
    UNARY("sqrt", f_sqrt, GEN_POSITIVE, 0),
    UNARY("abs", f_abs, GEN_GRID, 0),
    UNARY("relu", f_relu, GEN_GRID, 0),
    UNARY("gelu", f_gelu, GEN_NORMAL, 0),
    UNARY("quick_gelu", f_quick_gelu, GEN_NORMAL, 0),
    UNARY("tanh", f_tanh, GEN_NORMAL, 0),
    UNARY("sigmoid", f_sigmoid, GEN_NORMAL, 0),
    UNARY("clamp", f_clamp, GEN_GRID, -0.5f, 0.7f),
    UNARY("clamp high only", f_clamp, GEN_GRID, -INFINITY, 0.7f),
    {"gelu 0-dim", f_gelu, 1, {SCALAR_IN}, {0}},
    {"where broadcast", f_where, 2, {IN(3, 2, 1, 3), IN(1, 3)}, {0}, .aux = {2, {4, 1}, .floats = MASK_FLOAT}},
    {"where int mask", f_where, 2, {IN(3, 2, 1, 3), IN(1, 3)}, {0}, .aux = {1, {3}, .ints = MASK_INT}},
    {"masked_fill broadcast mask", f_masked_fill, 1, {IN(3, 2, 1, 3)}, {0},
     .aux = {2, {4, 1}, .floats = MASK_FLOAT}},
    {"masked_fill int mask", f_masked_fill, 1, {IN(3, 2, 1, 3)}, {0}, .aux = {1, {3}, .ints = MASK_INT}},
    {"tanh(x * w + b) broadcast", f_tanh_affine, 3, {IN(3, 2, 3, 4), IN(2, 3, 1), SCALAR_IN}, {0}},

    /* reduce.c, softmax.c: every dim, keepdim both ways, contiguous and transposed */
    REDUCE("sum", f_sum, GEN_NORMAL),
    REDUCE("mean", f_mean, GEN_NORMAL),
    REDUCE("max", f_max, GEN_DISTINCT),
    REDUCE("min", f_min, GEN_DISTINCT),
    REDUCE("norm", f_norm, GEN_NORMAL),
    REDUCE("logsumexp", f_logsumexp, GEN_NORMAL),
    {"softmax", f_softmax, 1, {{0}}, {0}, SWEEP_DIMS},
    {"log_softmax", f_log_softmax, 1, {{0}}, {0}, SWEEP_DIMS},
    {"topk_mean k 1", f_topk_mean, 1, {IN_G(3, GEN_DISTINCT, 3, 4, 5)}, {.i = {1}}, SWEEP_TRANSPOSED},
    {"topk_mean k 2", f_topk_mean, 1, {IN_G(3, GEN_DISTINCT, 3, 4, 5)}, {.i = {2}}, SWEEP_TRANSPOSED},
    {"topk_mean k 3", f_topk_mean, 1, {IN_G(3, GEN_DISTINCT, 3, 4, 5)}, {.i = {3}}, SWEEP_TRANSPOSED},

    /* layer_norm.c */
    {"layer_norm x, weight, bias", f_layer_norm, 3, {IN(3, 2, 3, 6), IN(1, 6), IN(1, 6)}, {0}, .tol = 5e-3},
    {"layer_norm without affine", f_layer_norm, 3, {IN(3, 2, 3, 6), ABSENT, ABSENT}, {0}, .tol = 5e-3},
    {"layer_norm weight and bias only", f_layer_norm, 3,
     {{.ndim = 3, .shape = {2, 3, 6}, .constant = true}, IN(1, 6), IN(1, 6)}, {0}, .tol = 5e-3},
    {"layer_norm transposed x", f_layer_norm, 3,
     {{.ndim = 2, .shape = {6, 4}, .view = VIEW_T01}, IN(1, 6), IN(1, 6)}, {0}, .tol = 5e-3},

    /* matmul.c: 1-D operands, batch broadcast, transposed operands read in place */
    {"x x^T (one leaf on both sides)", f_gram, 1, {IN(2, 3, 5)}, {0}},
    {"2-D x 2-D", f_matmul, 2, {IN(2, 3, 4), IN(2, 4, 5)}, {0}},
    {"A^T x B (non-contiguous)", f_matmul, 2, {{.ndim = 2, .shape = {4, 3}, .view = VIEW_TLAST}, IN(2, 4, 5)}, {0}},
    {"A x B^T (non-contiguous)", f_matmul, 2, {IN(2, 3, 4), {.ndim = 2, .shape = {5, 4}, .view = VIEW_TLAST}}, {0}},
    {"A^T x B^T", f_matmul, 2, {{.ndim = 2, .shape = {4, 3}, .view = VIEW_TLAST},
                                {.ndim = 2, .shape = {5, 4}, .view = VIEW_TLAST}}, {0}},
    {"vector x vector", f_matmul, 2, {IN(1, 4), IN(1, 4)}, {0}},
    {"matrix x vector", f_matmul, 2, {IN(2, 3, 4), IN(1, 4)}, {0}},
    {"vector x matrix", f_matmul, 2, {IN(1, 4), IN(2, 4, 3)}, {0}},
    {"vector x batch", f_matmul, 2, {IN(1, 4), IN(3, 2, 4, 3)}, {0}},
    {"batch x vector", f_matmul, 2, {IN(3, 2, 3, 4), IN(1, 4)}, {0}},
    {"broadcast batch [2, 1, 3, 4] x [3, 4, 2]", f_matmul, 2, {IN(4, 2, 1, 3, 4), IN(3, 3, 4, 2)}, {0}},
    {"broadcast batch, transposed", f_matmul, 2, {{.ndim = 3, .shape = {2, 4, 3}, .view = VIEW_TLAST},
                                                  {.ndim = 4, .shape = {2, 1, 2, 4}, .view = VIEW_TLAST}}, {0}},
    {"linear [2, 3, 4] x [4, 5]", f_matmul, 2, {IN(3, 2, 3, 4), IN(2, 4, 5)}, {0}},
    {"linear with W^T [2, 3, 4] x [5, 4]^T", f_matmul, 2,
     {IN(3, 2, 3, 4), {.ndim = 2, .shape = {5, 4}, .view = VIEW_TLAST}}, {0}},
    {"2-D x batch [3, 4] x [2, 4, 5]", f_matmul, 2, {IN(2, 3, 4), IN(3, 2, 4, 5)}, {0}},
    {"only B wants grad", f_matmul, 2, {{.ndim = 3, .shape = {2, 3, 4}, .constant = true}, IN(2, 4, 5)}, {0}},
    /* linear.c: x [..., n_in] x w [n_in, n_out] + b; x and w read in place or copied */
    {"linear x w + b", f_linear, 3, {IN(2, 3, 4), IN(2, 4, 5), IN(1, 5)}, {0}},
    {"linear without bias", f_linear, 3, {IN(2, 3, 4), IN(2, 4, 5), ABSENT}, {0}},
    {"linear 3-D x [2, 3, 4]", f_linear, 3, {IN(3, 2, 3, 4), IN(2, 4, 5), IN(1, 5)}, {0}},
    {"linear 1-D x", f_linear, 3, {IN(1, 4), IN(2, 4, 3), IN(1, 3)}, {0}},
    {"linear x^T (read transposed)", f_linear, 3,
     {{.ndim = 2, .shape = {4, 3}, .view = VIEW_TLAST}, IN(2, 4, 5), IN(1, 5)}, {0}},
    {"linear x narrowed [2, 2, 4] of [3, 2, 4]", f_linear, 3,
     {{.ndim = 3, .shape = {3, 2, 4}, .view = VIEW_NARROW}, IN(2, 4, 5), IN(1, 5)}, {0}},
    {"linear 3-D x non-contiguous (copied)", f_linear, 3,
     {{.ndim = 3, .shape = {3, 2, 4}, .view = VIEW_T01}, IN(2, 4, 5), IN(1, 5)}, {0}},
    {"linear w^T (torch layout [5, 4] read transposed)", f_linear, 3,
     {IN(3, 2, 3, 4), {.ndim = 2, .shape = {5, 4}, .view = VIEW_TLAST}, IN(1, 5)}, {0}},
    {"linear x^T and w^T", f_linear, 3,
     {{.ndim = 2, .shape = {4, 3}, .view = VIEW_TLAST}, {.ndim = 2, .shape = {5, 4}, .view = VIEW_TLAST}, ABSENT},
     {0}},
    {"linear only w and b want grad", f_linear, 3,
     {{.ndim = 3, .shape = {2, 3, 4}, .constant = true}, IN(2, 4, 5), IN(1, 5)}, {0}},
    {"linear only x wants grad", f_linear, 3,
     {IN(2, 3, 4), {.ndim = 2, .shape = {4, 5}, .constant = true}, {.ndim = 1, .shape = {5}, .constant = true}},
     {0}},
    /* cross_entropy.c: V = 7 classes, mean and none, logits read as given or copied */
    {"cross_entropy mean [5, 7]", f_cross_entropy, 1, {{.ndim = 2, .shape = {5, 7}, .scale = 2}}, {.i = {0}},
     .aux = {1, {5}, .ints = (const int32_t[]){3, 0, 6, 3, 1}}},
    {"cross_entropy none [5, 7]", f_cross_entropy, 1, {{.ndim = 2, .shape = {5, 7}, .scale = 2}}, {.i = {1}},
     .aux = {1, {5}, .ints = (const int32_t[]){3, 0, 6, 3, 1}}},
    {"cross_entropy none [2, 3, 7]", f_cross_entropy, 1, {IN(3, 2, 3, 7)}, {.i = {1}},
     .aux = {2, {2, 3}, .ints = (const int32_t[]){6, 5, 0, 0, 2, 4}}},
    {"cross_entropy mean [2, 3, 7]", f_cross_entropy, 1, {IN(3, 2, 3, 7)}, {.i = {0}},
     .aux = {2, {2, 3}, .ints = (const int32_t[]){6, 5, 0, 0, 2, 4}}},
    {"cross_entropy mean, logits transposed", f_cross_entropy, 1,
     {{.ndim = 2, .shape = {7, 4}, .scale = 2, .view = VIEW_TLAST}}, {.i = {0}},
     .aux = {1, {4}, .ints = (const int32_t[]){2, 6, 0, 2}}},

    /* linear_cross_entropy.c: K = 4 features, V = 7 classes; x strided, only one input wanting grad */
    {"linear_cross_entropy [5, 4] x [7, 4]", f_linear_cross_entropy, 2, {IN(2, 5, 4), IN(2, 7, 4)}, {0},
     .aux = {1, {5}, .ints = (const int32_t[]){3, 0, 6, 3, 1}}},
    {"linear_cross_entropy [2, 3, 4], x transposed", f_linear_cross_entropy, 2,
     {{.ndim = 3, .shape = {2, 4, 3}, .view = VIEW_TLAST}, IN(2, 7, 4)}, {0},
     .aux = {2, {2, 3}, .ints = (const int32_t[]){6, 5, 0, 0, 2, 4}}},
    {"linear_cross_entropy only w wants grad", f_linear_cross_entropy, 2,
     {{.ndim = 2, .shape = {5, 4}, .constant = true}, IN(2, 7, 4)}, {0},
     .aux = {1, {5}, .ints = (const int32_t[]){1, 2, 3, 4, 5}}},
    {"linear_cross_entropy only x wants grad", f_linear_cross_entropy, 2,
     {IN(2, 5, 4), {.ndim = 2, .shape = {7, 4}, .constant = true}}, {0},
     .aux = {1, {5}, .ints = (const int32_t[]){6, 6, 0, 1, 2}}},

    /* shape.c */
    {"concat 3 inputs", f_concat, 3, {IN(2, 2, 1), IN(2, 2, 2), IN(2, 2, 3)}, {.dim = 1, .i = {3}}, .tol = 1e-3},
    {"concat 6 inputs", f_concat, 6,
     {IN(2, 2, 1), IN(2, 2, 2), IN(2, 2, 3), IN(2, 2, 4), IN(2, 2, 5), IN(2, 2, 6)}, {.dim = 1, .i = {6}},
     .tol = 1e-3},
    {"concat with a transposed input", f_concat, 2,
     {IN(2, 2, 3), {.ndim = 2, .shape = {3, 4}, .view = VIEW_T01}}, {.dim = 0, .i = {2}}, .tol = 1e-3},
    {"index_select dim 1 (repeats)", f_index_select, 1, {IN(3, 3, 4, 2)}, {.dim = 1},
     .aux = {1, {5}, .ints = IDX_SELECT1}, .tol = 1e-3},
    {"index_select dim 0 (repeats)", f_index_select, 1, {IN(3, 3, 4, 2)}, {.dim = 0},
     .aux = {1, {4}, .ints = IDX_SELECT0}, .tol = 1e-3},
    {"gather dim 1 (transposed source, repeats)", f_gather, 1, {{.ndim = 2, .shape = {4, 3}, .view = VIEW_T01}},
     {.dim = 1}, .aux = {2, {2, 5}, .ints = IDX_GATHER1}, .tol = 1e-3},
    {"gather dim 0", f_gather, 1, {{.ndim = 2, .shape = {4, 3}, .view = VIEW_T01}}, {.dim = 0},
     .aux = {2, {4, 2}, .ints = IDX_GATHER0}, .tol = 1e-3},
    {"embedding (repeated ids)", f_embedding, 1, {IN(2, 5, 3)}, {0}, .aux = {2, {2, 3}, .ints = IDS_EMBED},
     .tol = 1e-3},

    /* view.c (and tensor.c's clone) */
    {"transpose+view", f_transpose_view, 1, {IN(2, 2, 3)}, {0}, .tol = 1e-3},
    {"narrow+expand", f_narrow_expand, 1, {IN(2, 2, 3)}, {0}, .tol = 1e-3},
    {"permute+clone", f_permute_clone, 1, {IN(3, 2, 3, 4)}, {0}, .tol = 1e-3},
    {"unsqueeze+squeeze", f_unsqueeze_squeeze, 1, {IN(2, 2, 3)}, {0}, .tol = 1e-3},
    {"select (last, from the end)+squeeze_all", f_select_squeeze_all, 1, {IN(4, 2, 1, 3, 1)}, {0}, .tol = 1e-3},
    {"expand_as [1, 3] to [2, 3]", f_expand_as, 1, {IN(2, 1, 3)}, {0}, .aux = {2, {2, 3}, .floats = SIX_FLOATS},
     .tol = 1e-3},
    {"clone of a narrowed input", f_clone, 1, {{.ndim = 2, .shape = {3, 4}, .view = VIEW_NARROW}}, {0}},

    /* conv1d.c */
    CONV("conv1d k3 d1", f_conv1d, 2, 3, 9, 2, 3, 3, 2, 1, 1, 1),
    CONV("conv1d k3 d3", f_conv1d, 1, 2, 12, 3, 2, 3, 0, 1, 3, 3),
    CONV("conv1d k4 s2", f_conv1d, 2, 2, 10, 3, 2, 4, 3, 2, 1, 1),
    CONV("conv1d k1", f_conv1d, 2, 3, 5, 2, 3, 1, 2, 1, 0, 1),
    CONV("conv_transpose1d k4 s2", f_conv_transpose1d, 2, 3, 5, 3, 2, 4, 2, 2, 1, 0),
    CONV("conv_transpose1d op1", f_conv_transpose1d, 1, 2, 4, 2, 3, 3, 3, 2, 1, 1),

    /* resblock.c: recomputing h, and keeping it */
    RES("res_conv_block B2 C3 S4 L6 d2", 2, 3, 4, 6, 2, 0, 51),
    RES("res_conv_block B1 C2 S3 L9 d1", 1, 2, 3, 9, 1, 0, 52),
    RES("res_conv_block B2 C3 S2 L5 d4", 2, 3, 2, 5, 4, 0, 53),
    RES("res_conv_block B2 C3 S4 L7 d3 keeping h", 2, 3, 4, 7, 3, 1, 54),

    /* vq.c: the codebook rows picked by codes (the commit loss has its own test) */
    {"vq_dequantise (repeated codes)", f_vq_dequantise, 1, {IN(2, 5, 3)}, {0},
     .aux = {2, {2, 3}, .ints = IDS_EMBED}},

    /* stft.c: |STFT| */
    STFT("stft_mag window shorter than n_fft, even n_fft", 2, 40, 16, 4, 12, 1),
    STFT("stft_mag 1-D, win = n_fft, hop not dividing L", 1, 37, 16, 5, 16, 2),
    STFT("stft_mag odd n_fft: no Nyquist bin, odd left pad", 2, 30, 15, 4, 10, 3),
    STFT("stft_mag hop larger than the window", 1, 25, 8, 10, 6, 4),
    STFT("stft_mag shortest signal reflect padding allows", 1, 9, 16, 3, 12, 5),

    /* attention.c: q, k, v [B, H, T, d]; i = attn_func, block_ctx */
    ATTN("attention dense B2 H2 T8 d4", 2, 2, 8, 4, 0, 0, VIEW_NONE, 61),
    ATTN("attention block B2 H2 T8 d4 block_ctx 4", 2, 2, 8, 4, 1, 4, VIEW_NONE, 62),
    ATTN("attention transposed block B2 H2 T8 d4 block_ctx 2", 2, 2, 8, 4, 2, 2, VIEW_NONE, 63),
    ATTN("attention previous block B2 H2 T8 d4 block_ctx 4", 2, 2, 8, 4, 3, 4, VIEW_NONE, 64),
    ATTN("attention previous block B1 H2 T8 d4 block_ctx 2", 1, 2, 8, 4, 3, 2, VIEW_NONE, 65),
    ATTN("attention dense, q transposed (heads, batch)", 2, 2, 8, 4, 0, 0, VIEW_T01, 66),
    ATTN("attention transposed block, q transposed (heads, batch)", 2, 2, 8, 4, 2, 4, VIEW_T01, 67),
    {"attention block, v constant", f_attention, 3,
     {IN(4, 1, 2, 8, 4), IN(4, 1, 2, 8, 4), {.ndim = 4, .shape = {1, 2, 8, 4}, .constant = true}},
     {.i = {1, 2}}, .seed = 68},
};
#pragma GCC diagnostic pop

#endif
