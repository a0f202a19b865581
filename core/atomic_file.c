/* Atomic file writes (see jbx_atomic_file.h): temp file, fsync, rename, fsync folder. */
#define _POSIX_C_SOURCE 200809L
#include "jbx_atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jbx_error.h"

struct jbx_atomic_file {
  char *path;
  char *tmp;
  int fd;
};

static int af_fail(const jbx_atomic_file *af, const char *what, int err) {
  return jbx_fail("cannot write %s (%s %s): %s", af->path, what, af->tmp, strerror(err));
}

static void af_free(jbx_atomic_file *af) {
  free(af->path);
  free(af->tmp);
  free(af);
}

jbx_atomic_file *jbx_atomic_open(const char *path) {
  if (!path || !*path) {
    jbx_fail("write: empty path");
    return NULL;
  }
  jbx_atomic_file *af = calloc(1, sizeof *af);
  size_t len = strlen(path) + 32;
  if (af) af->path = strdup(path);
  if (af && af->path) af->tmp = malloc(len);
  if (!af || !af->tmp) {
    if (af) af_free(af);
    jbx_fail("cannot write %s: out of memory", path);
    return NULL;
  }
  snprintf(af->tmp, len, "%s.tmp.%ld", path, (long)getpid());
  af->fd = open(af->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (af->fd < 0) {
    af_fail(af, "creating temp file", errno);
    af_free(af);
    return NULL;
  }
  return af;
}

int jbx_atomic_write(jbx_atomic_file *af, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    size_t chunk = n > (1u << 30) ? (1u << 30) : n;
    ssize_t w = write(af->fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      return af_fail(af, "writing temp file", errno);
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

void jbx_atomic_abort(jbx_atomic_file *af) {
  if (!af) return;
  if (af->fd >= 0) close(af->fd);
  unlink(af->tmp);
  af_free(af);
}

/* After the rename the data is in place; syncing the folder makes the rename durable. */
static int fsync_dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (!slash) {
    strcpy(dir, ".");
  } else {
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    if (len >= sizeof dir) return 0; /* absurd path: the rename already happened */
    memcpy(dir, path, len);
    dir[len] = '\0';
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return jbx_fail("wrote %s but cannot open its directory to sync it: %s", path, strerror(errno));
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  /* Some filesystems cannot sync directories; the data itself is already on disk. */
  if (rc != 0 && err != EINVAL && err != ENOTSUP && err != EROFS)
    return jbx_fail("wrote %s but syncing its directory failed: %s", path, strerror(err));
  return 0;
}

int jbx_atomic_commit(jbx_atomic_file *af) {
  if (fsync(af->fd) != 0) {
    af_fail(af, "syncing temp file", errno);
    jbx_atomic_abort(af);
    return -1;
  }
  int rc = close(af->fd);
  af->fd = -1;
  if (rc != 0) {
    af_fail(af, "closing temp file", errno);
    jbx_atomic_abort(af);
    return -1;
  }
  if (rename(af->tmp, af->path) != 0) {
    af_fail(af, "renaming temp file", errno);
    jbx_atomic_abort(af);
    return -1;
  }
  rc = fsync_dir_of(af->path);
  af_free(af);
  return rc;
}

int jbx_write_file_atomic(const char *path, const void *data, size_t n) {
  jbx_atomic_file *af = jbx_atomic_open(path);
  if (!af) return -1;
  if (jbx_atomic_write(af, data, n) != 0) {
    jbx_atomic_abort(af);
    return -1;
  }
  return jbx_atomic_commit(af);
}
