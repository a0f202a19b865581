/* The vector-quantisation bottleneck of Jukebox's VQ-VAE (an EMA codebook per level):
 * nearest-code assignment, dequantisation, the fused straight-through + commit-loss
 * forward, and the EMA codebook update that restarts dead codes from the batch.
 *
 * Layout: x is [N, D], one encoder output per row (the [B, D, T] activations permuted
 * to [B*T, D]); the codebook k is [K, D]; codes are int32, one per row of x.
 * The EMA state is three float32 tensors updated in place: k [K, D], k_sum [K, D] and
 * k_elem [K]; they must be contiguous and must not share storage. */
#ifndef JBX_VQ_H
#define JBX_VQ_H
#include <stdbool.h>

#include "jbx_rng.h"
#include "jbx_tensor.h"

/* Distances are computed for this many rows of x at a time (memory: rows * K floats). */
#ifndef JBX_VQ_BLOCK_ROWS
#define JBX_VQ_BLOCK_ROWS 4096
#endif

/* Per-step codebook statistics, as the reference logs them. */
typedef struct jbx_vq_metrics {
  double usage;     /* codes with k_elem >= threshold after the update */
  double used_curr; /* codes chosen at least `threshold` times in this batch */
  double entropy;   /* of this batch's code histogram, in nats */
  double dk;        /* RMS change of the codebook: ||k_new - k_old|| / sqrt(K*D) */
  double fit;       /* mean squared distance of a row of x to its code (before the update) */
  double pn;        /* RMS of the centred batch: ||x - mean(x)|| / sqrt(N*D) */
} jbx_vq_metrics;

/* Nearest code of every row of x by squared Euclidean distance, computed as the
 * reference does: |x|^2 - 2 x k^T + |k|^2 (sgemm over blocks of rows), first index on
 * ties. *codes gets int32 [N]; *min_dist (when min_dist is not NULL) the float [N]
 * distances. Not differentiable. Returns 0 or -1. */
int jbx_vq_assign(jbx_tensor *x, jbx_tensor *k, jbx_tensor **codes, jbx_tensor **min_dist);

/* Rows of k picked by codes (int32, any shape) -> [..., D]: an embedding lookup.
 * Differentiable in k. NULL on error (e.g. a code out of range). */
jbx_tensor *jbx_vq_dequantise(jbx_tensor *k, jbx_tensor *codes);

/* The bottleneck's forward in one pass (fields are new references; free with
 * jbx_vq_result_free). Gradients reach x only, k is treated as a constant. */
typedef struct jbx_vq_result {
  jbx_tensor *codes;  /* int32 [N] */
  jbx_tensor *x_q;    /* [N, D]: the values k[codes], the gradient passes straight to x */
  jbx_tensor *commit; /* 0-dim: sum((x - k[codes])^2) / numel(x), gradient 2(x - k[codes])/numel */
  double fit;         /* mean of the minimum distances */
} jbx_vq_result;
int jbx_vq_quantise(jbx_tensor *x, jbx_tensor *k, jbx_vq_result *out);
void jbx_vq_result_free(jbx_vq_result *r);

/* pn of the batch x [N, D] (see jbx_vq_metrics) into *out. Returns 0 or -1. */
int jbx_vq_prenorm(jbx_tensor *x, double *out);

/* First-batch initialisation: k = K random rows of x without repetition (when N < K the
 * batch is tiled and each tiled row gets N(0, (0.01/sqrt(D))^2) noise), k_sum = k,
 * k_elem = 1. rng NULL means jbx_default_rng(). Returns 0 or -1 (state untouched). */
int jbx_vq_init_from_data(jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem, jbx_tensor *x,
                          jbx_rng *rng);

/* One EMA step after the batch x was assigned `codes` (int32, N of them, any shape):
 *   k_sum  = mu k_sum  + (1 - mu) onehot^T x
 *   k_elem = mu k_elem + (1 - mu) counts
 *   k[j]   = k_sum[j] / k_elem[j]     where k_elem[j] >= threshold (and > 0)
 *          = a random row of x        otherwise (a restart, drawn as in init)
 * As the reference, a restarted code keeps its decayed k_sum and k_elem: only k changes.
 * Draws from rng only when some code restarts. m may be NULL. Returns 0 or -1; on error
 * nothing is modified. */
int jbx_vq_ema_update(jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem, jbx_tensor *x,
                      jbx_tensor *codes, double mu, double threshold, jbx_rng *rng,
                      jbx_vq_metrics *m);

/* Below this k_elem a code without restarts keeps its k: k_sum / k_elem would divide by
 * (nearly) zero, and both have only decayed by the same factor since k was last set. */
#define JBX_VQ_ELEM_EPS 1e-20

/* jbx_vq_ema_update with restarts switchable. restart = false: a code below the
 * threshold is not replaced by a row of x; it takes k = k_sum / k_elem like any other
 * code when k_elem > JBX_VQ_ELEM_EPS and keeps its k otherwise, and nothing is drawn
 * from rng. The metrics are the same either way (usage still counts the codes with
 * k_elem >= threshold). jbx_vq_ema_update(...) is jbx_vq_ema_update_ex(..., true, ...). */
int jbx_vq_ema_update_ex(jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem, jbx_tensor *x,
                         jbx_tensor *codes, double mu, double threshold, bool restart,
                         jbx_rng *rng, jbx_vq_metrics *m);

/* Data parallelism (jbx_dist.h): the same init and EMA step over the batch of every
 * process, x being this process's rows, in rank order, of that batch. The statistics
 * (counts, onehot^T x, fit, the moments behind pn) are summed over the processes in one
 * all-reduce; restarts draw from the same generator state everywhere over the whole
 * batch, each process fills the rows it holds and one more sum spreads them. Every
 * process then holds the same codebook, the one a single process with the whole batch
 * would hold (up to the rounding of the sums' order); the metrics are the whole batch's.
 * All processes must call together. Under MPI, a failed collective may leave the state
 * half-updated (the run then stops). With one process these are the functions above. */
int jbx_vq_init_across(jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem, jbx_tensor *x, jbx_rng *rng);
int jbx_vq_ema_update_across(jbx_tensor *k, jbx_tensor *k_sum, jbx_tensor *k_elem, jbx_tensor *x,
                             jbx_tensor *codes, double mu, double threshold, bool restart,
                             jbx_rng *rng, jbx_vq_metrics *m);
#endif
