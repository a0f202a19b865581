/* Tensors: float32 (or int32 for codes), up to 8 dims, row-major with strides over a
 * reference-counted storage that views share. Reverse-mode autograd: an op whose inputs
 * need gradients records a jbx_node on its output; jbx_backward walks them in reverse. */
#ifndef JBX_TENSOR_H
#define JBX_TENSOR_H
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JBX_MAX_DIMS 8

typedef enum { JBX_F32 = 0, JBX_I32 = 1 } jbx_dtype;

typedef struct jbx_storage {
  void *data;
  size_t nbytes;
  int refs;
  bool uncached; /* freed to the system, not kept for reuse (see jbx_recompute) */
} jbx_storage;

struct jbx_node;

typedef struct jbx_tensor {
  int refs;
  jbx_dtype dtype;
  int ndim;
  int64_t shape[JBX_MAX_DIMS];
  int64_t strides[JBX_MAX_DIMS]; /* in elements */
  int64_t offset;                /* in elements */
  jbx_storage *storage;
  bool requires_grad;
  struct jbx_tensor *grad; /* accumulated gradient (leaves), or transient (inner nodes) */
  struct jbx_node *node;   /* the op that made this tensor; NULL for leaves */
} jbx_tensor;

/* The backward of an op: given its output and the gradient of the loss w.r.t. it,
 * accumulate gradients into the inputs with jbx_accum_grad. Returns 0 or -1. */
typedef int (*jbx_backward_fn)(struct jbx_node *node, jbx_tensor *out, jbx_tensor *gout);

/* One recorded op. Inputs and saved tensors are retained and released when the backward
 * pass spends the node; the op's parameters are a struct of its own, copied into
 * params when recorded (jbx_record_params) and read back with JBX_NODE_PARAMS. */
typedef struct jbx_node {
  const char *op;
  jbx_backward_fn backward;
  int n_in;
  jbx_tensor **in; /* n_in inputs, any number (entries may be NULL for absent options) */
  int n_saved;
  jbx_tensor **saved; /* extra tensors the backward reads (jbx_node_save) */
  void *ctx;          /* op-specific state, freed with free_ctx */
  void (*free_ctx)(void *ctx);
  size_t params_size;
  alignas(max_align_t) unsigned char params[]; /* the op's parameter struct */
} jbx_node;

/* ---- lifetime ---- */
jbx_tensor *jbx_retain(jbx_tensor *t);
void jbx_release(jbx_tensor *t); /* NULL-safe */

/* ---- creation (all return a new contiguous tensor with refs = 1, or NULL) ---- */
jbx_tensor *jbx_empty(jbx_dtype dt, int ndim, const int64_t *shape);
jbx_tensor *jbx_zeros(int ndim, const int64_t *shape);
jbx_tensor *jbx_full(int ndim, const int64_t *shape, float value);
jbx_tensor *jbx_scalar(float value); /* 0-dim */
jbx_tensor *jbx_arange(double start, double stop, double step);
struct jbx_rng;
jbx_tensor *jbx_rand(int ndim, const int64_t *shape, struct jbx_rng *rng);  /* U[0,1) */
jbx_tensor *jbx_randn(int ndim, const int64_t *shape, struct jbx_rng *rng); /* N(0,1) */
jbx_tensor *jbx_from_floats(int ndim, const int64_t *shape, const float *data);
jbx_tensor *jbx_from_ints(int ndim, const int64_t *shape, const int32_t *data);

/* ---- inspection ---- */
const char *jbx_dtype_name(jbx_dtype dt); /* "float32" or "int32" */
int64_t jbx_numel(const jbx_tensor *t);
bool jbx_is_contiguous(const jbx_tensor *t);
/* Pointer to the first element; only meaningful with strides (or when contiguous). */
float *jbx_f32(const jbx_tensor *t);
int32_t *jbx_i32(const jbx_tensor *t);
bool jbx_same_shape(const jbx_tensor *a, const jbx_tensor *b);
/* Normalises a possibly negative dim; on error sets a message naming op and returns -1. */
int jbx_norm_dim(const char *op, const jbx_tensor *t, int dim);
/* Reads element i (in row-major logical order) as double: slow, for tests and printing. */
double jbx_get(const jbx_tensor *t, int64_t i);

/* ---- views (share storage; differentiable) ---- */
/* A new header over t's storage (no graph): the building block of the views below. */
jbx_tensor *jbx_alias(jbx_tensor *t, int ndim, const int64_t *shape, const int64_t *strides,
                      int64_t offset);
jbx_tensor *jbx_view(jbx_tensor *t, int ndim, const int64_t *shape); /* one -1 allowed; copies if not viewable */
jbx_tensor *jbx_transpose(jbx_tensor *t, int d0, int d1);
jbx_tensor *jbx_permute(jbx_tensor *t, const int *perm);
jbx_tensor *jbx_narrow(jbx_tensor *t, int dim, int64_t start, int64_t length);
jbx_tensor *jbx_expand(jbx_tensor *t, int ndim, const int64_t *shape);
jbx_tensor *jbx_unsqueeze(jbx_tensor *t, int dim);
jbx_tensor *jbx_squeeze(jbx_tensor *t, int dim); /* dim must have size 1 */
jbx_tensor *jbx_contiguous(jbx_tensor *t);       /* retains t itself if already contiguous */
jbx_tensor *jbx_clone(jbx_tensor *t);            /* always a fresh contiguous copy */
jbx_tensor *jbx_detach(jbx_tensor *t);           /* shares storage, no graph */
/* The slice at `index` of dim (negative: from the end), with dim removed. */
jbx_tensor *jbx_select(jbx_tensor *t, int dim, int64_t index);
/* t without any of its size-1 dims. */
jbx_tensor *jbx_squeeze_all(jbx_tensor *t);
/* t broadcast to other's shape (jbx_expand's rules). */
jbx_tensor *jbx_expand_as(jbx_tensor *t, const jbx_tensor *other);
/* Copies src into dst elementwise (same numel, any strides); not recorded. */
int jbx_copy_(jbx_tensor *dst, const jbx_tensor *src);
int jbx_fill_(jbx_tensor *t, float value); /* not recorded */
int jbx_add_into_(jbx_tensor *dst, const jbx_tensor *src); /* dst += src, same shape, any strides; not recorded */
/* Moves t's values into base's storage at element `offset` (contiguous, t's shape) and
 * makes t a view of it, keeping t's header (so every holder of t sees the move). Views
 * made of t's old storage before the move keep the old values. Not recorded. */
int jbx_rebind(jbx_tensor *t, jbx_tensor *base, int64_t offset);

/* ---- autograd ---- */
bool jbx_grad_enabled(void);
bool jbx_set_grad_enabled(bool on); /* returns the previous value */
/* True when grad mode is on and any of the n inputs requires grad. */
bool jbx_needs_grad(int n, jbx_tensor *const *inputs);
/* Attaches a new node to out (which then requires grad); inputs are retained.
 * Returns the node so the op can save more state, or NULL when nothing is recorded
 * (no input needs a gradient, or out of memory: then jbx_last_error() says so). */
jbx_node *jbx_record(jbx_tensor *out, const char *op, jbx_backward_fn bw, int n,
                     jbx_tensor *const *inputs);
/* The same, copying the op's parameter struct (size bytes at params) into the node. */
jbx_node *jbx_record_params(jbx_tensor *out, const char *op, jbx_backward_fn bw, int n,
                            jbx_tensor *const *inputs, const void *params, size_t size);
/* Records with the parameter struct p (an lvalue): JBX_RECORD(out, "op", bw, n, in, p). */
#define JBX_RECORD(out, op, bw, n, inputs, p) \
  jbx_record_params(out, op, bw, n, inputs, &(p), sizeof(p))
/* The node's parameters as the op's struct type T (checked against the recorded size). */
#define JBX_NODE_PARAMS(node, T) ((const T *)jbx_node_params((node), sizeof(T)))
const void *jbx_node_params(const jbx_node *node, size_t size);
/* Retains t (NULL allowed) among the node's saved tensors. Returns 0 or -1. */
int jbx_node_save(jbx_node *node, jbx_tensor *t);
/* Adds g into t->grad (allocating it), summing over broadcast dims so it fits t's shape. */
int jbx_accum_grad(jbx_tensor *t, jbx_tensor *g);
/* Reverse-mode pass from root; grad may be NULL when root has one element (seeds 1). */
int jbx_backward(jbx_tensor *root, jbx_tensor *grad);
void jbx_zero_grad(jbx_tensor *t); /* drops t->grad */

#endif
