/* Elementwise ops, forward and backward side by side. Every op runs a row kernel through
 * the broadcasting iterator (broadcast.c): same-shape contiguous operands become one flat
 * row that the compiler vectorises; a 0-dim/scalar operand a stride-0 row; anything else
 * (broadcast, narrowed) an odometer over strides, transposed operands 16 x 16 tiles. Work
 * is split across OpenMP threads when big. Inputs are read through their strides, never
 * copied. exp, tanh, sigmoid and gelu use the vectorisable fast_math.h (within 1.4 ulp).
 *
 * Backward of a binary op computes the full-size gradient and lets jbx_accum_grad sum it
 * over the broadcast dims. Unary backward reads the input (node->in[0]) or the output.
 *
 * dtypes: float32 throughout. add, sub, mul (int32 result, wrapping like PyTorch) and
 * gt, lt, eq (float 0/1 result) also take two int32 tensors; mixing dtypes is an error.
 * where and masked_fill take a float32 or int32 mask (nonzero means true).
 *
 * Choices where PyTorch also has to choose: maximum/minimum give a tie half the gradient
 * on each side (as PyTorch); clamp passes the gradient where lo <= x <= hi, bounds
 * included (as PyTorch); relu/clamp/maximum/minimum propagate NaN (as PyTorch). */
#include <math.h>
#include <stdint.h>

#include "fast_math.h"
#include "jbx_broadcast.h"
#include "jbx_error.h"
#include "jbx_ops.h"
#include "kernels.h"
#include "op_kit.h"

/* The least elements per thread: cheap ops need more to pay for starting a thread. */
#define GRAIN_CHEAP ((int64_t)1 << 15)
#define GRAIN_COSTLY ((int64_t)1 << 12)

/* sqrt(2/pi) and the cubic coefficient of GPT-2/Jukebox's tanh-approximated GELU. */
#define GELU_BETA 0.7978845608028654f
#define GELU_KAPPA 0.044715f

static inline float gelu_f(float x) {
  return 0.5f * x * (1.0f + jbx_fast_tanhf(GELU_BETA * (x + GELU_KAPPA * x * x * x)));
}
/* d gelu / dx: 0.5 (1 + t) + 0.5 x (1 - t^2) beta (1 + 3 kappa x^2), t = tanh(inner) */
static inline float gelu_grad(float g, float x) {
  float t = jbx_fast_tanhf(GELU_BETA * (x + GELU_KAPPA * x * x * x));
  return g * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_BETA * (1.0f + 3.0f * GELU_KAPPA * x * x));
}

/* Jukebox's transformer MLP activation: x sigmoid(1.702 x), and its derivative
 * s + 1.702 x s (1 - s) with s = sigmoid(1.702 x). */
#define QUICK_GELU_A 1.702f
static inline float quick_gelu_sigmoid(float x) { return 1.0f / (1.0f + jbx_fast_expf(-QUICK_GELU_A * x)); }
static inline float quick_gelu_grad(float g, float x) {
  float s = quick_gelu_sigmoid(x);
  return g * (s + QUICK_GELU_A * x * s * (1.0f - s));
}

/* ------------------------------------------------------------------ row kernels */
/* Each macro defines a jbx_bcast_loop whose element expression sees x (operand 1),
 * y (operand 2), z (operand 3) and c (the float parameters in ctx). The stride-1 and
 * stride-0 cases get their own loops so the compiler vectorises them. */

#define ROW1(name, TO, TX, EXPR)                                                   \
  static void name(int64_t n, char **p, const int64_t *s, const void *ctx) {     \
    TO *restrict o = (TO *)p[0];                                                  \
    const TX *a = (const TX *)p[1];                                               \
    const float *c = (const float *)ctx;                                          \
    (void)c;                                                                      \
    if (s[0] == 1 && s[1] == 1) {                                                 \
      for (int64_t i = 0; i < n; i++) {                                           \
        TX x = a[i];                                                              \
        (void)x;                                                                  \
        o[i] = (EXPR);                                                            \
      }                                                                           \
    } else {                                                                      \
      for (int64_t i = 0; i < n; i++) {                                           \
        TX x = a[i * s[1]];                                                       \
        (void)x;                                                                  \
        o[i * s[0]] = (EXPR);                                                     \
      }                                                                           \
    }                                                                             \
  }

#define ROW2(name, TO, TX, TY, EXPR)                                               \
  static void name(int64_t n, char **p, const int64_t *s, const void *ctx) {     \
    TO *restrict o = (TO *)p[0];                                                  \
    const TX *a = (const TX *)p[1];                                               \
    const TY *b = (const TY *)p[2];                                               \
    const float *c = (const float *)ctx;                                          \
    (void)c;                                                                      \
    if (s[0] == 1 && s[1] == 1 && s[2] == 1) {                                    \
      for (int64_t i = 0; i < n; i++) {                                           \
        TX x = a[i];                                                              \
        TY y = b[i];                                                              \
        o[i] = (EXPR);                                                            \
      }                                                                           \
    } else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {                             \
      const TY y = b[0];                                                          \
      for (int64_t i = 0; i < n; i++) {                                           \
        TX x = a[i];                                                              \
        o[i] = (EXPR);                                                            \
      }                                                                           \
    } else if (s[0] == 1 && s[1] == 0 && s[2] == 1) {                             \
      const TX x = a[0];                                                          \
      for (int64_t i = 0; i < n; i++) {                                           \
        TY y = b[i];                                                              \
        o[i] = (EXPR);                                                            \
      }                                                                           \
    } else {                                                                      \
      for (int64_t i = 0; i < n; i++) {                                           \
        TX x = a[i * s[1]];                                                       \
        TY y = b[i * s[2]];                                                       \
        o[i * s[0]] = (EXPR);                                                     \
      }                                                                           \
    }                                                                             \
  }

#define ROW3(name, TX, EXPR)                                                       \
  static void name(int64_t n, char **p, const int64_t *s, const void *ctx) {     \
    float *restrict o = (float *)p[0];                                            \
    const TX *a = (const TX *)p[1];                                               \
    const float *b = (const float *)p[2], *d = (const float *)p[3];               \
    const float *c = (const float *)ctx;                                          \
    (void)c;                                                                      \
    if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1) {                       \
      for (int64_t i = 0; i < n; i++) {                                           \
        TX x = a[i];                                                              \
        float y = b[i], z = d[i];                                                 \
        o[i] = (EXPR);                                                            \
      }                                                                           \
    } else {                                                                      \
      for (int64_t i = 0; i < n; i++) {                                           \
        TX x = a[i * s[1]];                                                       \
        float y = b[i * s[2]], z = d[i * s[3]];                                   \
        o[i * s[0]] = (EXPR);                                                     \
      }                                                                           \
    }                                                                             \
  }

/* A branch-free select: plain `?:` feeding arithmetic keeps GCC from vectorising. */
#define SEL(c, a, b) jbx_fm_select((c), (a), (b))

/* int32 arithmetic wraps (through uint32) as PyTorch's does, without C's overflow UB. */
#define WRAP(op) ((int32_t)((uint32_t)x op (uint32_t)y))

/* forward, binary */
ROW2(add_row, float, float, float, x + y)
ROW2(sub_row, float, float, float, x - y)
ROW2(mul_row, float, float, float, x * y)
ROW2(div_row, float, float, float, x / y)
ROW2(pow_row, float, float, float, powf(x, y))
ROW2(maximum_row, float, float, float, (x > y || x != x) ? x : y)
ROW2(minimum_row, float, float, float, (x < y || x != x) ? x : y)
ROW2(gt_row, float, float, float, x > y ? 1.0f : 0.0f)
ROW2(lt_row, float, float, float, x < y ? 1.0f : 0.0f)
ROW2(eq_row, float, float, float, x == y ? 1.0f : 0.0f)
ROW2(straight_row, float, float, float, x + (y - x))
ROW2(add_row_i, int32_t, int32_t, int32_t, WRAP(+))
ROW2(sub_row_i, int32_t, int32_t, int32_t, WRAP(-))
ROW2(mul_row_i, int32_t, int32_t, int32_t, WRAP(*))
ROW2(gt_row_i, float, int32_t, int32_t, x > y ? 1.0f : 0.0f)
ROW2(lt_row_i, float, int32_t, int32_t, x < y ? 1.0f : 0.0f)
ROW2(eq_row_i, float, int32_t, int32_t, x == y ? 1.0f : 0.0f)
/* where(mask, a, b) and masked_fill(a, mask): the mask is operand 1 (x) in both */
ROW3(where_row, float, x != 0 ? y : z)
ROW3(where_row_i, int32_t, x != 0 ? y : z)
ROW2(fill_row, float, float, float, y != 0 ? c[0] : x)
ROW2(fill_row_i, float, float, int32_t, y != 0 ? c[0] : x)

/* forward, unary (c: scalar parameters) */
ROW1(add_scalar_row, float, float, x + c[0])
ROW1(mul_scalar_row, float, float, x * c[0])
ROW1(neg_row, float, float, -x)
ROW1(exp_row, float, float, jbx_fast_expf(x))
ROW1(log_row, float, float, logf(x))
ROW1(sqrt_row, float, float, sqrtf(x))
ROW1(abs_row, float, float, fabsf(x))
ROW1(relu_row, float, float, jbx_relu_f(x))
ROW1(tanh_row, float, float, jbx_fast_tanhf(x))
ROW1(sigmoid_row, float, float, 1.0f / (1.0f + jbx_fast_expf(-x)))
ROW1(gelu_row, float, float, gelu_f(x))
ROW1(quick_gelu_row, float, float, x * quick_gelu_sigmoid(x))
ROW1(clamp_row, float, float, SEL(x > c[1], c[1], SEL(x < c[0], c[0], x)))
/* pow by a constant: the common exponents without powf (as PyTorch special-cases them) */
ROW1(pow_row_c, float, float, powf(x, c[0]))
ROW1(square_row, float, float, x * x)
ROW1(cube_row, float, float, x * x * x)
ROW1(recip_row, float, float, 1.0f / x)
ROW1(rsqrt_row, float, float, 1.0f / sqrtf(x))
ROW1(one_row, float, float, 1.0f)
ROW1(copy_row, float, float, x)

/* backward: x is the incoming gradient g, y the saved input or output, z a third operand */
ROW2(bw_exp_row, float, float, float, x * y)              /* y = out; also g * b for mul */
ROW2(bw_log_row, float, float, float, x / y)              /* y = input; also g / b for div */
ROW2(bw_sqrt_row, float, float, float, x / (2.0f * y))    /* y = out */
ROW2(bw_abs_row, float, float, float, y > 0 ? x : (y < 0 ? -x : 0.0f))
ROW2(bw_relu_row, float, float, float, jbx_relu_grad_f(x, y))  /* y = out */
ROW2(bw_tanh_row, float, float, float, x * (1.0f - y * y))  /* y = out */
ROW2(bw_sigmoid_row, float, float, float, x * y * (1.0f - y)) /* y = out */
ROW2(bw_clamp_row, float, float, float, SEL((y >= c[0]) & (y <= c[1]), x, 0.0f))
ROW2(bw_pow_c_row, float, float, float, x * c[0] * powf(y, c[0] - 1.0f))
ROW2(bw_square_row, float, float, float, x * 2.0f * y)
ROW2(bw_gelu_row, float, float, float, gelu_grad(x, y))
ROW2(bw_quick_gelu_row, float, float, float, quick_gelu_grad(x, y)) /* y = input */
ROW1(neg_g_row, float, float, -x)
ROW1(scale_g_row, float, float, x * c[0])
/* g, a, b: d(a/b)/db = -g a / b^2 */
ROW3(bw_div_b_row, float, -x * y / (z * z))
/* g, a, b: d(a^b)/da = g b a^(b-1), 0 where b == 0 (PyTorch's convention) */
ROW3(bw_pow_a_row, float, z == 0 ? 0.0f : x * z * powf(y, z - 1.0f))
/* g, a, b: d(a^b)/db = g a^b log a, 0 where a == 0 and b >= 0 (PyTorch's convention) */
ROW3(bw_pow_b_row, float, (y == 0 && z >= 0) ? 0.0f : x * powf(y, z) * logf(y))
/* g, self, other: the larger side takes the gradient, a tie half (NaN: both, as PyTorch) */
ROW3(bw_max_row, float, SEL(y < z, 0.0f, SEL(y == z, 0.5f * x, x)))
ROW3(bw_min_row, float, SEL(y > z, 0.0f, SEL(y == z, 0.5f * x, x)))
/* g, mask: the gradient where the mask is set / not set */
ROW2(bw_mask_on_row, float, float, float, y != 0 ? x : 0.0f)
ROW2(bw_mask_off_row, float, float, float, y != 0 ? 0.0f : x)
ROW2(bw_mask_on_row_i, float, float, int32_t, y != 0 ? x : 0.0f)
ROW2(bw_mask_off_row_i, float, float, int32_t, y != 0 ? 0.0f : x)

/* ------------------------------------------------------------------ plumbing */

/* Inputs present and float32, or (when ints are allowed) all int32. Returns the common
 * dtype or -1. names: what to call each input in a message. */
static int check_inputs(const char *op, int n, jbx_tensor *const *ts, const char *const *names,
                        bool allow_int) {
  for (int k = 0; k < n; k++)
    if (!ts[k]) return jbx_fail("%s: %s is NULL", op, names[k]);
  for (int k = 0; k < n; k++) {
    if (!allow_int && ts[k]->dtype != JBX_F32)
      return jbx_fail("%s: %s is %s; this op needs float32 (convert with to_dtype)", op, names[k],
                      jbx_dtype_name(ts[k]->dtype));
    if (ts[k]->dtype != ts[0]->dtype)
      return jbx_fail("%s: %s is %s and %s is %s; convert one with to_dtype", op, names[0],
                      jbx_dtype_name(ts[0]->dtype), names[k], jbx_dtype_name(ts[k]->dtype));
  }
  return (int)ts[0]->dtype;
}

/* A new tensor of dtype dt with the broadcast shape of ins, filled by fn over (out, ins). */
static jbx_tensor *map(const char *op, jbx_dtype dt, jbx_bcast_loop fn, const void *ctx,
                       int64_t grain, int n, jbx_tensor *const *ins) {
  int ndim;
  int64_t shape[JBX_MAX_DIMS];
  if (jbx_broadcast_shape(op, n, ins, &ndim, shape) < 0) return NULL;
  jbx_tensor *out = jbx_empty(dt, ndim, shape);
  if (!out) return NULL;
  jbx_tensor *ops[JBX_BCAST_MAX_OPS] = {out};
  for (int k = 0; k < n; k++) ops[k + 1] = ins[k];
  jbx_bcast it;
  if (jbx_bcast_init(&it, n + 1, ops) < 0) {
    jbx_release(out);
    return NULL;
  }
  jbx_bcast_run(&it, fn, ctx, grain);
  return out;
}

static jbx_tensor *map1(jbx_bcast_loop fn, const void *ctx, int64_t grain, jbx_tensor *a) {
  return map("elementwise", JBX_F32, fn, ctx, grain, 1, &a);
}
static jbx_tensor *map2(jbx_bcast_loop fn, const void *ctx, int64_t grain, jbx_tensor *a,
                        jbx_tensor *b) {
  jbx_tensor *in[2] = {a, b};
  return map("elementwise", JBX_F32, fn, ctx, grain, 2, in);
}
static jbx_tensor *map3(jbx_bcast_loop fn, int64_t grain, jbx_tensor *a, jbx_tensor *b,
                        jbx_tensor *c) {
  jbx_tensor *in[3] = {a, b, c};
  return map("elementwise", JBX_F32, fn, NULL, grain, 3, in);
}

/* ------------------------------------------------------------------ binary ops */

typedef struct {
  const char *op;
  jbx_bcast_loop f32, i32; /* i32: kernel for two int32 inputs, or NULL */
  jbx_dtype i32_out;
  jbx_backward_fn backward; /* NULL: not differentiable */
  int64_t grain;
} binary_op;

static const char *const AB[] = {"a", "b"};

static jbx_tensor *binary(const binary_op *k, jbx_tensor *a, jbx_tensor *b) {
  jbx_tensor *in[2] = {a, b};
  int dt = check_inputs(k->op, 2, in, AB, k->i32 != NULL);
  if (dt < 0) return NULL;
  jbx_tensor *out = dt == JBX_I32 ? map(k->op, k->i32_out, k->i32, NULL, k->grain, 2, in)
                                  : map(k->op, JBX_F32, k->f32, NULL, k->grain, 2, in);
  if (out && dt == JBX_F32 && k->backward) jbx_record(out, k->op, k->backward, 2, in);
  return out;
}

static int add_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  int rc = 0;
  if (jbx_wants_grad(nd->in[0])) rc = jbx_accum_grad(nd->in[0], g);
  if (rc == 0 && jbx_wants_grad(nd->in[1])) rc = jbx_accum_grad(nd->in[1], g);
  return rc;
}

static int sub_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  int rc = 0;
  if (jbx_wants_grad(nd->in[0])) rc = jbx_accum_grad(nd->in[0], g);
  if (rc == 0 && jbx_wants_grad(nd->in[1]))
    rc = jbx_give_grad(nd->in[1], map1(neg_g_row, NULL, GRAIN_CHEAP, g));
  return rc;
}

static int mul_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  jbx_tensor *a = nd->in[0], *b = nd->in[1];
  int rc = 0;
  if (jbx_wants_grad(a)) rc = jbx_give_grad(a, map2(bw_exp_row, NULL, GRAIN_CHEAP, g, b));
  if (rc == 0 && jbx_wants_grad(b)) rc = jbx_give_grad(b, map2(bw_exp_row, NULL, GRAIN_CHEAP, g, a));
  return rc;
}

static int div_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  jbx_tensor *a = nd->in[0], *b = nd->in[1];
  int rc = 0;
  if (jbx_wants_grad(a)) rc = jbx_give_grad(a, map2(bw_log_row, NULL, GRAIN_CHEAP, g, b));
  if (rc == 0 && jbx_wants_grad(b)) rc = jbx_give_grad(b, map3(bw_div_b_row, GRAIN_CHEAP, g, a, b));
  return rc;
}

static int pow_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  jbx_tensor *a = nd->in[0], *b = nd->in[1];
  int rc = 0;
  if (jbx_wants_grad(a)) rc = jbx_give_grad(a, map3(bw_pow_a_row, GRAIN_COSTLY, g, a, b));
  if (rc == 0 && jbx_wants_grad(b)) rc = jbx_give_grad(b, map3(bw_pow_b_row, GRAIN_COSTLY, g, a, b));
  return rc;
}

static int maximum_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  jbx_tensor *a = nd->in[0], *b = nd->in[1];
  int rc = 0;
  if (jbx_wants_grad(a)) rc = jbx_give_grad(a, map3(bw_max_row, GRAIN_CHEAP, g, a, b));
  if (rc == 0 && jbx_wants_grad(b)) rc = jbx_give_grad(b, map3(bw_max_row, GRAIN_CHEAP, g, b, a));
  return rc;
}

static int minimum_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  jbx_tensor *a = nd->in[0], *b = nd->in[1];
  int rc = 0;
  if (jbx_wants_grad(a)) rc = jbx_give_grad(a, map3(bw_min_row, GRAIN_CHEAP, g, a, b));
  if (rc == 0 && jbx_wants_grad(b)) rc = jbx_give_grad(b, map3(bw_min_row, GRAIN_CHEAP, g, b, a));
  return rc;
}

static const binary_op ADD = {"add", add_row, add_row_i, JBX_I32, add_backward, GRAIN_CHEAP};
static const binary_op SUB = {"sub", sub_row, sub_row_i, JBX_I32, sub_backward, GRAIN_CHEAP};
static const binary_op MUL = {"mul", mul_row, mul_row_i, JBX_I32, mul_backward, GRAIN_CHEAP};
static const binary_op DIV = {"div", div_row, NULL, JBX_F32, div_backward, GRAIN_CHEAP};
static const binary_op POW = {"pow", pow_row, NULL, JBX_F32, pow_backward, GRAIN_COSTLY};
static const binary_op MAXIMUM = {"maximum", maximum_row, NULL, JBX_F32, maximum_backward, GRAIN_CHEAP};
static const binary_op MINIMUM = {"minimum", minimum_row, NULL, JBX_F32, minimum_backward, GRAIN_CHEAP};
static const binary_op GT = {"gt", gt_row, gt_row_i, JBX_F32, NULL, GRAIN_CHEAP};
static const binary_op LT = {"lt", lt_row, lt_row_i, JBX_F32, NULL, GRAIN_CHEAP};
static const binary_op EQ = {"eq", eq_row, eq_row_i, JBX_F32, NULL, GRAIN_CHEAP};

jbx_tensor *jbx_add(jbx_tensor *a, jbx_tensor *b) { return binary(&ADD, a, b); }
jbx_tensor *jbx_sub(jbx_tensor *a, jbx_tensor *b) { return binary(&SUB, a, b); }
jbx_tensor *jbx_mul(jbx_tensor *a, jbx_tensor *b) { return binary(&MUL, a, b); }
jbx_tensor *jbx_div(jbx_tensor *a, jbx_tensor *b) { return binary(&DIV, a, b); }
jbx_tensor *jbx_pow(jbx_tensor *a, jbx_tensor *b) { return binary(&POW, a, b); }
jbx_tensor *jbx_maximum(jbx_tensor *a, jbx_tensor *b) { return binary(&MAXIMUM, a, b); }
jbx_tensor *jbx_minimum(jbx_tensor *a, jbx_tensor *b) { return binary(&MINIMUM, a, b); }
jbx_tensor *jbx_gt(jbx_tensor *a, jbx_tensor *b) { return binary(&GT, a, b); }
jbx_tensor *jbx_lt(jbx_tensor *a, jbx_tensor *b) { return binary(&LT, a, b); }
jbx_tensor *jbx_eq(jbx_tensor *a, jbx_tensor *b) { return binary(&EQ, a, b); }

/* ------------------------------------------------------------------ unary ops */
/* Scalar parameters travel to the kernels as floats and are kept in the node. */
typedef struct {
  float c[4];
} scalar_params;

static jbx_tensor *unary(const char *op, jbx_tensor *a, jbx_bcast_loop fn, const float *c, int nc,
                         jbx_backward_fn bw, int64_t grain) {
  static const char *const names[] = {"input"};
  if (check_inputs(op, 1, &a, names, false) < 0) return NULL;
  jbx_tensor *out = map(op, JBX_F32, fn, c, grain, 1, &a);
  scalar_params p = {{0}};
  for (int i = 0; i < nc; i++) p.c[i] = c[i];
  if (out && bw) JBX_RECORD(out, op, bw, 1, &a, p);
  return out;
}


static int pass_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  return jbx_accum_grad(nd->in[0], g);
}
static int neg_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  return jbx_give_grad(nd->in[0], map1(neg_g_row, NULL, GRAIN_CHEAP, g));
}
static int scale_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  const float *c = JBX_NODE_PARAMS(nd, scalar_params)->c;
  return jbx_give_grad(nd->in[0], map1(scale_g_row, c, GRAIN_CHEAP, g));
}
/* Backward kernels of the form f(g, input) or f(g, output). */
#define UNARY_BACKWARD(name, row, operand, grain)                                 \
  static int name(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {                 \
    const float *c = JBX_NODE_PARAMS(nd, scalar_params)->c;                       \
    return jbx_give_grad(nd->in[0], map2(row, c, grain, g, operand));                      \
  }
UNARY_BACKWARD(exp_backward, bw_exp_row, out, GRAIN_CHEAP)
UNARY_BACKWARD(log_backward, bw_log_row, nd->in[0], GRAIN_CHEAP)
UNARY_BACKWARD(sqrt_backward, bw_sqrt_row, out, GRAIN_CHEAP)
UNARY_BACKWARD(abs_backward, bw_abs_row, nd->in[0], GRAIN_CHEAP)
UNARY_BACKWARD(relu_backward, bw_relu_row, out, GRAIN_CHEAP)
UNARY_BACKWARD(tanh_backward, bw_tanh_row, out, GRAIN_CHEAP)
UNARY_BACKWARD(sigmoid_backward, bw_sigmoid_row, out, GRAIN_CHEAP)
UNARY_BACKWARD(gelu_backward, bw_gelu_row, nd->in[0], GRAIN_COSTLY)
UNARY_BACKWARD(quick_gelu_backward, bw_quick_gelu_row, nd->in[0], GRAIN_COSTLY)
UNARY_BACKWARD(clamp_backward, bw_clamp_row, nd->in[0], GRAIN_CHEAP)
UNARY_BACKWARD(pow_c_backward, bw_pow_c_row, nd->in[0], GRAIN_COSTLY)
UNARY_BACKWARD(square_backward, bw_square_row, nd->in[0], GRAIN_CHEAP)

static int zero_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  /* x^0 == 1 everywhere: its gradient is zero, but the input still receives one. */
  float c[4] = {0};
  return jbx_give_grad(nd->in[0], map1(scale_g_row, c, GRAIN_CHEAP, g));
}

jbx_tensor *jbx_add_scalar(jbx_tensor *a, float s) {
  return unary("add_scalar", a, add_scalar_row, &s, 1, pass_backward, GRAIN_CHEAP);
}
jbx_tensor *jbx_mul_scalar(jbx_tensor *a, float s) {
  return unary("mul_scalar", a, mul_scalar_row, &s, 1, scale_backward, GRAIN_CHEAP);
}
jbx_tensor *jbx_neg(jbx_tensor *a) { return unary("neg", a, neg_row, NULL, 0, neg_backward, GRAIN_CHEAP); }
jbx_tensor *jbx_exp(jbx_tensor *a) { return unary("exp", a, exp_row, NULL, 0, exp_backward, GRAIN_COSTLY); }
jbx_tensor *jbx_log(jbx_tensor *a) { return unary("log", a, log_row, NULL, 0, log_backward, GRAIN_COSTLY); }
jbx_tensor *jbx_sqrt(jbx_tensor *a) { return unary("sqrt", a, sqrt_row, NULL, 0, sqrt_backward, GRAIN_CHEAP); }
jbx_tensor *jbx_abs(jbx_tensor *a) { return unary("abs", a, abs_row, NULL, 0, abs_backward, GRAIN_CHEAP); }
jbx_tensor *jbx_relu(jbx_tensor *a) { return unary("relu", a, relu_row, NULL, 0, relu_backward, GRAIN_CHEAP); }
jbx_tensor *jbx_tanh(jbx_tensor *a) { return unary("tanh", a, tanh_row, NULL, 0, tanh_backward, GRAIN_COSTLY); }
jbx_tensor *jbx_sigmoid(jbx_tensor *a) {
  return unary("sigmoid", a, sigmoid_row, NULL, 0, sigmoid_backward, GRAIN_COSTLY);
}
jbx_tensor *jbx_gelu(jbx_tensor *a) { return unary("gelu", a, gelu_row, NULL, 0, gelu_backward, GRAIN_COSTLY); }
jbx_tensor *jbx_quick_gelu(jbx_tensor *a) {
  return unary("quick_gelu", a, quick_gelu_row, NULL, 0, quick_gelu_backward, GRAIN_COSTLY);
}

jbx_tensor *jbx_pow_scalar(jbx_tensor *a, float p) {
  const char *op = "pow_scalar";
  float c[1] = {p};
  if (p == 0) return unary(op, a, one_row, c, 1, zero_backward, GRAIN_CHEAP);
  if (p == 1) return unary(op, a, copy_row, c, 1, pass_backward, GRAIN_CHEAP);
  if (p == 2) return unary(op, a, square_row, c, 1, square_backward, GRAIN_CHEAP);
  jbx_backward_fn bw = pow_c_backward;
  if (p == 3) return unary(op, a, cube_row, c, 1, bw, GRAIN_CHEAP);
  if (p == -1) return unary(op, a, recip_row, c, 1, bw, GRAIN_CHEAP);
  if (p == 0.5f) return unary(op, a, sqrt_row, c, 1, bw, GRAIN_CHEAP);
  if (p == -0.5f) return unary(op, a, rsqrt_row, c, 1, bw, GRAIN_CHEAP);
  return unary(op, a, pow_row_c, c, 1, bw, GRAIN_COSTLY);
}

jbx_tensor *jbx_clamp(jbx_tensor *a, float lo, float hi) {
  if (isnan(lo) || isnan(hi) || lo > hi) {
    jbx_fail("clamp: bounds [%g, %g] are not an interval (lo must be <= hi, neither NaN)", lo, hi);
    return NULL;
  }
  float c[2] = {lo, hi};
  return unary("clamp", a, clamp_row, c, 2, clamp_backward, GRAIN_CHEAP);
}

/* ------------------------------------------------------------------ masks */

static const char *const WHERE_NAMES[] = {"mask", "a", "b"};

/* mask may be float32 or int32; the values float32. */
static int check_mask(const char *op, jbx_tensor *mask, const char *const *names, int n,
                      jbx_tensor *const *vals) {
  if (!mask) return jbx_fail("%s: mask is NULL", op);
  return check_inputs(op, n, vals, names, false);
}

/* Saves the mask on nd (when recorded) for the backward; returns out, or NULL when out of
 * memory. */
static jbx_tensor *save_mask(jbx_tensor *out, jbx_node *nd, jbx_tensor *mask) {
  if (nd && jbx_node_save(nd, mask) < 0) {
    jbx_release(out);
    return NULL;
  }
  return out;
}

/* node: in = {a, b}; saved[0] = mask. */
static int where_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  jbx_tensor *mask = nd->saved[0];
  bool mi = mask->dtype == JBX_I32;
  int rc = 0;
  if (jbx_wants_grad(nd->in[0]))
    rc = jbx_give_grad(nd->in[0], map2(mi ? bw_mask_on_row_i : bw_mask_on_row, NULL, GRAIN_CHEAP, g, mask));
  if (rc == 0 && jbx_wants_grad(nd->in[1]))
    rc = jbx_give_grad(nd->in[1], map2(mi ? bw_mask_off_row_i : bw_mask_off_row, NULL, GRAIN_CHEAP, g, mask));
  return rc;
}

jbx_tensor *jbx_where(jbx_tensor *mask, jbx_tensor *a, jbx_tensor *b) {
  jbx_tensor *vals[2] = {a, b};
  if (check_mask("where", mask, WHERE_NAMES + 1, 2, vals) < 0) return NULL;
  jbx_tensor *in[3] = {mask, a, b};
  jbx_tensor *out = map("where", JBX_F32, mask->dtype == JBX_I32 ? where_row_i : where_row, NULL,
                        GRAIN_CHEAP, 3, in);
  return save_mask(out, jbx_record(out, "where", where_backward, 2, vals), mask);
}

/* node: in = {a}; saved[0] = mask. */
static int masked_fill_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *g) {
  jbx_tensor *mask = nd->saved[0];
  jbx_bcast_loop fn = mask->dtype == JBX_I32 ? bw_mask_off_row_i : bw_mask_off_row;
  return jbx_give_grad(nd->in[0], map2(fn, NULL, GRAIN_CHEAP, g, mask));
}

jbx_tensor *jbx_masked_fill(jbx_tensor *a, jbx_tensor *mask, float value) {
  static const char *const names[] = {"a"};
  if (check_mask("masked_fill", mask, names, 1, &a) < 0) return NULL;
  jbx_tensor *in[2] = {a, mask};
  jbx_tensor *out = map("masked_fill", JBX_F32, mask->dtype == JBX_I32 ? fill_row_i : fill_row,
                        &value, GRAIN_CHEAP, 2, in);
  return save_mask(out, jbx_record(out, "masked_fill", masked_fill_backward, 1, &a), mask);
}

/* ------------------------------------------------------------------ straight-through */

/* Computes a + (b - a) exactly as the reference's `x + (x_q - x).detach()`, so values
 * match it bit for bit (they may differ from b in the last place). b gets no gradient. */
jbx_tensor *jbx_straight_through(jbx_tensor *a, jbx_tensor *b) {
  jbx_tensor *in[2] = {a, b};
  if (check_inputs("straight_through", 2, in, AB, false) < 0) return NULL;
  jbx_tensor *out = map("straight_through", JBX_F32, straight_row, NULL, GRAIN_CHEAP, 2, in);
  if (out) jbx_record(out, "straight_through", pass_backward, 1, &a);
  return out;
}
