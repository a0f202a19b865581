/* Atomic file writes: the data goes to a temp file in the same folder ("path.tmp.<pid>"),
 * is fsynced, renamed over path, and the folder is fsynced; a reader sees the old file or
 * the new one, never a part. Failures name the path, the step and the errno text, and
 * leave the old file untouched. */
#ifndef JBX_ATOMIC_FILE_H
#define JBX_ATOMIC_FILE_H
#include <stddef.h>

typedef struct jbx_atomic_file jbx_atomic_file;

/* Creates the temp file for path; NULL on failure (see jbx_last_error()). */
jbx_atomic_file *jbx_atomic_open(const char *path);
/* Appends n bytes; 0 or -1. After a failure only jbx_atomic_abort is left to call. */
int jbx_atomic_write(jbx_atomic_file *f, const void *data, size_t n);
/* Syncs, renames over path, syncs the folder, and frees f (also on failure); 0 or -1. */
int jbx_atomic_commit(jbx_atomic_file *f);
/* Removes the temp file and frees f; the file at path was never touched. NULL is fine. */
void jbx_atomic_abort(jbx_atomic_file *f);

/* The whole write in one call: open, write n bytes, commit. 0 or -1. */
int jbx_write_file_atomic(const char *path, const void *data, size_t n);
#endif
