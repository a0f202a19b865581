/* matmul as torch.matmul: [.., n, k] x [.., k, m] -> [.., n, m] with broadcast batch dims;
 * a 1-D operand is a row (left) or column (right) vector whose dim is dropped from the
 * result. Every product goes through jbx_sgemm. An operand whose last two dims are a
 * row-major or transposed row-major layout is passed as it is (CblasNoTrans / CblasTrans
 * with its leading dimension), batch dims use their own strides (0 when broadcast), so a
 * transposed or sliced input is not copied. Backward: dA = dC B^T, dB = A^T dC, computed
 * by the same kernel, which can also sum over batch dims that the input was broadcast in
 * (beta = 1 accumulation, or one gemm when the batch folds into the contraction). */
#include <limits.h>
#include <stdlib.h>

#include "fsum.h"
#include "jbx_error.h"
#include "jbx_gemm.h"
#include "jbx_ops.h"
#include "op_kit.h"

/* Below this many multiply-adds per product, OpenBLAS runs single-threaded; batches of
 * such products are spread over OpenMP threads instead, when there is enough work in
 * all (PAR_GEMMS multiply-adds) to pay for waking the threads. */
#define SMALL_GEMM 262144
#define PAR_GEMMS 524288

typedef struct {
  jbx_tensor *t; /* the tensor read (maybe a contiguous copy), retained */
  bool trans;    /* stored as the transpose, row-major */
  int64_t ld;
  int64_t bstride[JBX_MAX_DIMS]; /* per batch dim of the full batch shape; 0 = broadcast */
} operand;

/* Whether the [r, c] matrix in the last two dims of t is row-major with a leading
 * dimension (trans = false) or the transpose of one (trans = true). */
static bool gemm_layout(const jbx_tensor *t, bool *trans, int64_t *ld) {
  int64_t r = t->shape[t->ndim - 2], c = t->shape[t->ndim - 1];
  int64_t s0 = t->strides[t->ndim - 2], s1 = t->strides[t->ndim - 1];
  int64_t c1 = c > 1 ? c : 1, r1 = r > 1 ? r : 1;
  if ((c <= 1 || s1 == 1) && (r <= 1 || s0 >= c1)) {
    *trans = false;
    *ld = r <= 1 ? c1 : s0;
    return *ld <= INT_MAX;
  }
  if ((r <= 1 || s0 == 1) && (c <= 1 || s1 >= r1)) {
    *trans = true;
    *ld = c <= 1 ? r1 : s1;
    return *ld <= INT_MAX;
  }
  return false;
}

static int operand_init(operand *op, jbx_tensor *t, int nb, const int64_t *bs) {
  op->t = NULL;
  if (gemm_layout(t, &op->trans, &op->ld)) {
    op->t = jbx_retain(t);
  } else {
    op->t = jbx_plain(t);
    if (!op->t) return -1;
    op->trans = false;
    op->ld = t->shape[t->ndim - 1] > 1 ? t->shape[t->ndim - 1] : 1;
  }
  int tb = op->t->ndim - 2;
  for (int d = 0; d < nb; d++) {
    int td = d - (nb - tb);
    op->bstride[d] = td < 0 || op->t->shape[td] == 1 || bs[d] == 1 ? 0 : op->t->strides[td];
  }
  return 0;
}

/* Whether the batch dims (those of size > 1) step through memory as one dim of stride
 * `first`, batch dim after batch dim (so the batch can fold into a gemm dimension). */
static bool folds(const int64_t *bstride, int nb, const int64_t *bs, int64_t first) {
  int64_t want = first;
  for (int d = nb - 1; d >= 0; d--) {
    if (bs[d] == 1) continue;
    if (bstride[d] != want) return false;
    want *= bs[d];
  }
  return true;
}

/* C[obatch.., n, m] = sum over the batch dims that obatch reduces (size 1 or missing) of
 * op(A) op(B). a: [.., n, k], b: [.., k, m] with batch dims that broadcast together and
 * with obatch. Not recorded. */
static jbx_tensor *mm(jbx_tensor *a, jbx_tensor *b, int onb, const int64_t *obatch) {
  int anb = a->ndim - 2, bnb = b->ndim - 2;
  int nb = anb > bnb ? anb : bnb;
  nb = onb > nb ? onb : nb;
  int64_t bs[JBX_MAX_DIMS], nbatch = 1;
  for (int d = 0; d < nb; d++) {
    int ad = d - (nb - anb), bd = d - (nb - bnb), od = d - (nb - onb);
    int64_t s = 1;
    if (ad >= 0 && a->shape[ad] != 1) s = a->shape[ad];
    if (bd >= 0 && b->shape[bd] != 1) s = b->shape[bd];
    if (od >= 0 && obatch[od] != 1) s = obatch[od];
    bs[d] = s;
    nbatch *= s;
  }
  int64_t n = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1], m = b->shape[b->ndim - 1];
  int64_t oshape[JBX_MAX_DIMS];
  for (int d = 0; d < onb; d++) oshape[d] = obatch[d];
  oshape[onb] = n;
  oshape[onb + 1] = m;
  /* Output batch strides over the full batch shape; 0 where the output sums. */
  int64_t cstride[JBX_MAX_DIMS], st = n * m;
  bool reduce = false;
  for (int d = nb - 1; d >= 0; d--) {
    int od = d - (nb - onb);
    bool kept = od >= 0 && obatch[od] == bs[d];
    cstride[d] = kept && bs[d] > 1 ? st : 0;
    if (!kept && bs[d] > 1) reduce = true;
    if (od >= 0) st *= obatch[od];
  }
  if (n > INT_MAX || m > INT_MAX || k > INT_MAX) {
    jbx_fail("matmul: sizes %lld x %lld x %lld are too large for BLAS", (long long)n, (long long)k,
             (long long)m);
    return NULL;
  }
  if (n * m == 0 || k == 0 || nbatch == 0) return jbx_zeros0(onb + 2, oshape);
  operand A, B;
  if (operand_init(&A, a, nb, bs) < 0) return NULL;
  if (operand_init(&B, b, nb, bs) < 0) {
    jbx_release(A.t);
    return NULL;
  }
  jbx_tensor *c = reduce ? jbx_zeros0(onb + 2, oshape) : jbx_empty(JBX_F32, onb + 2, oshape);
  if (!c) goto done;
  const float *pa = jbx_f32(A.t), *pb = jbx_f32(B.t);
  float *pc = jbx_f32(c);
  enum CBLAS_TRANSPOSE ta = A.trans ? CblasTrans : CblasNoTrans, tb = B.trans ? CblasTrans : CblasNoTrans;
  bool b_shared = true, all_reduced = true;
  for (int d = 0; d < nb; d++) {
    if (bs[d] > 1 && B.bstride[d]) b_shared = false;
    if (bs[d] > 1 && cstride[d]) all_reduced = false;
  }
  if (nbatch == 1 ||
      (!reduce && b_shared && !A.trans && folds(A.bstride, nb, bs, n * A.ld) && nbatch * n <= INT_MAX)) {
    /* One product: A's batch folds into its rows (e.g. [B, T, D] x [D, E]). */
    jbx_sgemm(ta, tb, (int)(nbatch * n), (int)m, (int)k, 1.0f, pa, (int)A.ld, pb, (int)B.ld,
              0.0f, pc, (int)m);
    goto done;
  }
  if (all_reduced && A.trans && !B.trans && folds(A.bstride, nb, bs, k * A.ld) &&
      folds(B.bstride, nb, bs, k * B.ld) && nbatch * k <= INT_MAX) {
    /* One product: the batch folds into the contraction (e.g. the weight gradient A^T dC). */
    jbx_sgemm(ta, tb, (int)n, (int)m, (int)(nbatch * k), 1.0f, pa, (int)A.ld, pb, (int)B.ld,
              0.0f, pc, (int)m);
    goto done;
  }
  double macs = (double)n * m * k;
  bool par = !reduce && macs <= SMALL_GEMM && macs * nbatch >= PAR_GEMMS;
  float beta = reduce ? 1.0f : 0.0f;
#pragma omp parallel for schedule(static) if (par && nbatch > 1)
  for (int64_t i = 0; i < nbatch; i++) {
    int64_t oa = 0, ob = 0, oc = 0, rest = i;
    for (int d = nb - 1; d >= 0; d--) {
      int64_t id = rest % bs[d];
      rest /= bs[d];
      oa += id * A.bstride[d];
      ob += id * B.bstride[d];
      oc += id * cstride[d];
    }
    jbx_sgemm(ta, tb, (int)n, (int)m, (int)k, 1.0f, pa + oa, (int)A.ld, pb + ob, (int)B.ld,
              beta, pc + oc, (int)m);
  }
done:
  jbx_release(A.t);
  jbx_release(B.t);
  return c;
}

/* A header over t with its last two dims swapped (no graph). */
static jbx_tensor *swap_last(jbx_tensor *t) {
  int64_t shape[JBX_MAX_DIMS], strides[JBX_MAX_DIMS];
  for (int d = 0; d < t->ndim; d++) {
    shape[d] = t->shape[d];
    strides[d] = t->strides[d];
  }
  int x = t->ndim - 2, y = t->ndim - 1;
  shape[x] = t->shape[y];
  shape[y] = t->shape[x];
  strides[x] = t->strides[y];
  strides[y] = t->strides[x];
  return jbx_alias(t, t->ndim, shape, strides, t->offset);
}

/* node: in[0] = a, in[1] = b, both at least 2-D. */
static int matmul_backward(jbx_node *nd, jbx_tensor *out, jbx_tensor *gout) {
  jbx_tensor *a = nd->in[0], *b = nd->in[1];
  int rc = 0;
  if (a->requires_grad) {
    jbx_tensor *bt = swap_last(b);
    jbx_tensor *ga = bt ? mm(gout, bt, a->ndim - 2, a->shape) : NULL;
    rc = ga ? jbx_accum_grad(a, ga) : -1;
    jbx_release(ga);
    jbx_release(bt);
  }
  if (rc == 0 && b->requires_grad) {
    jbx_tensor *at = swap_last(a);
    jbx_tensor *gb = at ? mm(at, gout, b->ndim - 2, b->shape) : NULL;
    rc = gb ? jbx_accum_grad(b, gb) : -1;
    jbx_release(gb);
    jbx_release(at);
  }
  return rc;
}

/* Shape checks with the user's shapes in every message. */
static int check(const jbx_tensor *a, const jbx_tensor *b) {
  char sa[160], sb[160];
  if (!a || !b) return jbx_fail("matmul: both operands are required");
  jbx_shape_str(a, sa, sizeof sa);
  jbx_shape_str(b, sb, sizeof sb);
  if (a->dtype != JBX_F32 || b->dtype != JBX_F32)
    return jbx_fail("matmul: %s x %s: operands must be float32, got %s", sa, sb,
                    a->dtype != JBX_F32 ? "int32 on the left" : "int32 on the right");
  if (a->ndim == 0 || b->ndim == 0)
    return jbx_fail("matmul: %s x %s: operands must have at least 1 dim", sa, sb);
  int64_t ka = a->shape[a->ndim - 1], kb = b->shape[b->ndim == 1 ? 0 : b->ndim - 2];
  if (ka != kb)
    return jbx_fail("matmul: %s x %s: inner sizes %lld and %lld differ", sa, sb, (long long)ka, (long long)kb);
  int anb = a->ndim > 2 ? a->ndim - 2 : 0, bnb = b->ndim > 2 ? b->ndim - 2 : 0;
  int nb = anb > bnb ? anb : bnb;
  for (int d = 0; d < nb; d++) {
    int ad = d - (nb - anb), bd = d - (nb - bnb);
    int64_t x = ad >= 0 ? a->shape[ad] : 1, y = bd >= 0 ? b->shape[bd] : 1;
    if (x != y && x != 1 && y != 1)
      return jbx_fail("matmul: %s x %s: batch dims do not broadcast (%lld vs %lld)", sa, sb, (long long)x,
                      (long long)y);
  }
  return 0;
}

jbx_tensor *jbx_matmul(jbx_tensor *a, jbx_tensor *b) {
  if (check(a, b) < 0) return NULL;
  /* Vectors become [1, k] / [k, 1] views (differentiable), squeezed out at the end. */
  jbx_tensor *a2 = a->ndim == 1 ? jbx_unsqueeze(a, 0) : jbx_retain(a);
  jbx_tensor *b2 = b->ndim == 1 ? jbx_unsqueeze(b, 1) : jbx_retain(b);
  jbx_tensor *out = NULL;
  if (a2 && b2) {
    int anb = a2->ndim - 2, bnb = b2->ndim - 2, nb = anb > bnb ? anb : bnb;
    int64_t bs[JBX_MAX_DIMS];
    for (int d = 0; d < nb; d++) {
      int ad = d - (nb - anb), bd = d - (nb - bnb);
      int64_t x = ad >= 0 ? a2->shape[ad] : 1, y = bd >= 0 ? b2->shape[bd] : 1;
      bs[d] = x == 1 ? y : x;
    }
    out = mm(a2, b2, nb, bs);
    jbx_tensor *ins[2] = {a2, b2};
    if (out) jbx_record(out, "matmul", matmul_backward, 2, ins);
  }
  jbx_release(a2);
  jbx_release(b2);
  if (out && a->ndim == 1) {
    jbx_tensor *s = jbx_squeeze(out, -2);
    jbx_release(out);
    out = s;
  }
  if (out && b->ndim == 1) {
    jbx_tensor *s = jbx_squeeze(out, -1);
    jbx_release(out);
    out = s;
  }
  return out;
}
