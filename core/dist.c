/* The collectives of jbx_dist.h over Open MPI's C API, or the one-process identity when
 * the build has no MPI or no launcher started this process. */
#include "jbx_dist.h"

#include <limits.h>
#include <stdlib.h>

#include "jbx_error.h"

#ifdef JBX_HAVE_MPI
#include <mpi.h>

static bool tried, active, finished;
static int world_rank, world_size = 1;

/* Started by a launcher: Open MPI's mpirun, or a PMI/PMIx one such as Slurm's srun.
 * A plain `jbx` stays a single process and never starts MPI (a singleton MPI_Init
 * would spawn a helper daemon for nothing). */
static bool launched(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

static int mpi_fail(const char *what, int rc) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  msg[len] = '\0';
  return jbx_fail("dist.%s: MPI failed on rank %d of %d: %s", what, world_rank, world_size,
                  len ? msg : "unknown error");
}

static void start(void) {
  if (tried) return;
  tried = true;
  if (!launched()) return;
  int inited = 0, provided = 0;
  MPI_Initialized(&inited);
  /* FUNNELED: only the Lua thread calls MPI; OpenMP threads compute between calls.
   * MPI_Init's own errors are fatal (the error handler can only be set after it). */
  if (!inited) MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
  /* Errors come back as codes, so a lost peer is a Lua error naming the collective. */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  active = true;
}

static bool on(void) {
  start();
  return active && !finished && world_size > 1;
}

bool jbx_dist_has_mpi(void) { return true; }
int jbx_dist_rank(void) {
  start();
  return world_rank;
}
int jbx_dist_size(void) {
  start();
  return world_size;
}

/* MPI counts are int: large buffers go in chunks of 2^30 elements. */
#define CHUNK (1 << 30)

static int allreduce(const char *what, void *buf, int64_t n, MPI_Datatype type, size_t elem, MPI_Op op) {
  if (n < 0) return jbx_fail("dist.%s: negative count %lld", what, (long long)n);
  if (!on()) return 0;
  for (int64_t at = 0; at < n; at += CHUNK) {
    int count = (int)(n - at < CHUNK ? n - at : CHUNK);
    int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + (size_t)at * elem, count, type, op, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(what, rc);
  }
  return 0;
}

int jbx_dist_allreduce_sum_f32(float *buf, int64_t n) {
  return allreduce("allreduce", buf, n, MPI_FLOAT, sizeof(float), MPI_SUM);
}
int jbx_dist_allreduce_sum_f64(double *buf, int64_t n) {
  return allreduce("allreduce", buf, n, MPI_DOUBLE, sizeof(double), MPI_SUM);
}

int jbx_dist_any(bool *flag) {
  int v = *flag ? 1 : 0;
  if (allreduce("any", &v, 1, MPI_INT, sizeof v, MPI_MAX) < 0) return -1;
  *flag = v != 0;
  return 0;
}

int jbx_dist_broadcast(void *buf, int64_t nbytes, int root) {
  start();
  if (root < 0 || root >= world_size)
    return jbx_fail("dist.broadcast: root %d is not a rank (0 to %d)", root, world_size - 1);
  if (!on()) return 0;
  for (int64_t at = 0; at < nbytes; at += CHUNK) {
    int count = (int)(nbytes - at < CHUNK ? nbytes - at : CHUNK);
    int rc = MPI_Bcast((char *)buf + at, count, MPI_BYTE, root, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail("broadcast", rc);
  }
  return 0;
}

int jbx_dist_barrier(void) {
  if (!on()) return 0;
  int rc = MPI_Barrier(MPI_COMM_WORLD);
  return rc == MPI_SUCCESS ? 0 : mpi_fail("barrier", rc);
}

int jbx_dist_offset(int64_t n_local, int64_t *offset, int64_t *total) {
  *offset = 0;
  *total = n_local;
  if (!on()) return 0;
  long long mine = n_local, before = 0, all = 0;
  int rc = MPI_Exscan(&mine, &before, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  if (rc == MPI_SUCCESS) rc = MPI_Allreduce(&mine, &all, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) return mpi_fail("offset", rc);
  *offset = world_rank == 0 ? 0 : before; /* MPI_Exscan leaves rank 0's result undefined */
  *total = all;
  return 0;
}

void jbx_dist_finish(int status) {
  if (!active || finished) return;
  finished = true;
  if (status == 0) MPI_Finalize();
}

#else /* no MPI in this build: one process */

bool jbx_dist_has_mpi(void) { return false; }
int jbx_dist_rank(void) { return 0; }
int jbx_dist_size(void) { return 1; }
int jbx_dist_allreduce_sum_f32(float *buf, int64_t n) {
  return n < 0 ? jbx_fail("dist.allreduce: negative count %lld", (long long)n) : 0;
}
int jbx_dist_allreduce_sum_f64(double *buf, int64_t n) {
  return n < 0 ? jbx_fail("dist.allreduce: negative count %lld", (long long)n) : 0;
}
int jbx_dist_any(bool *flag) { return 0; }
int jbx_dist_broadcast(void *buf, int64_t nbytes, int root) {
  return root == 0 ? 0 : jbx_fail("dist.broadcast: root %d is not a rank (0 to 0)", root);
}
int jbx_dist_barrier(void) { return 0; }
int jbx_dist_offset(int64_t n_local, int64_t *offset, int64_t *total) {
  *offset = 0;
  *total = n_local;
  return 0;
}
void jbx_dist_finish(int status) {}
#endif
