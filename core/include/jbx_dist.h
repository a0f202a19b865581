/* Data parallelism over processes: the few collectives training needs, through Open MPI.
 * Built without MPI (JBX_HAVE_MPI undefined) or run without a launcher (mpirun, srun),
 * the world is one process: rank 0 of size 1, and every collective is the identity.
 * MPI starts on first use, in the thread that calls (the Lua thread); OpenMP threads
 * never call these. Ranks are 0-based, as MPI counts them. Buffers are reduced in place.
 * Errors come back as -1 with jbx_last_error() naming the collective and MPI's reason
 * (MPI_ERRORS_RETURN), never an abort from inside MPI. */
#ifndef JBX_DIST_H
#define JBX_DIST_H
#include <stdbool.h>
#include <stdint.h>

bool jbx_dist_has_mpi(void); /* built with Open MPI */
int jbx_dist_rank(void);
int jbx_dist_size(void);

/* buf[i] = sum over ranks of buf[i]. */
int jbx_dist_allreduce_sum_f32(float *buf, int64_t n);
int jbx_dist_allreduce_sum_f64(double *buf, int64_t n);
/* *flag = true on every rank when it is true on any rank. */
int jbx_dist_any(bool *flag);
/* nbytes at buf on `root` copied to every rank. */
int jbx_dist_broadcast(void *buf, int64_t nbytes, int root);
int jbx_dist_barrier(void);
/* This rank's n_local items are items [*offset, *offset + n_local) of a sequence of
 * *total items laid out in rank order (an exclusive prefix sum over ranks). */
int jbx_dist_offset(int64_t n_local, int64_t *offset, int64_t *total);

/* Ends MPI at exit: MPI_Finalize when status is 0; otherwise nothing, so a rank that
 * fails exits at once and mpirun ends the job (MPI_Finalize would wait for ranks that
 * may be blocked in a collective). Safe to call when MPI never started, and twice. */
void jbx_dist_finish(int status);
#endif
