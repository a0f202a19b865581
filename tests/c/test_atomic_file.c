/* The atomic writer (core/atomic_file.c): whole and streamed writes, abort, and errors
 * that name the path and the errno text. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "jbx_atomic_file.h"
#include "jbx_error.h"

static char dir[64];

/* The whole content of path ("" when absent), in a static buffer. */
static const char *content(const char *path) {
  static char buf[256];
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f) fclose(f);
  buf[n] = '\0';
  return buf;
}

/* Entries of the test folder: a temp file left behind shows up here. */
static int entries(void) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  if (d) closedir(d);
  return n;
}

int main(void) {
  strcpy(dir, "/tmp/jbx_test_af_XXXXXX");
  if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
  char path[128], missing[128];
  snprintf(path, sizeof path, "%s/metrics.json", dir);
  snprintf(missing, sizeof missing, "%s/no/such/x.json", dir);

  CHECK(jbx_write_file_atomic(path, "{\"a\":1}\n", 8) == 0, "%s", jbx_last_error());
  CHECK(strcmp(content(path), "{\"a\":1}\n") == 0, "first write: %s", content(path));
  CHECK(jbx_write_file_atomic(path, "{}\n", 3) == 0, "%s", jbx_last_error());
  CHECK(strcmp(content(path), "{}\n") == 0, "overwrite: %s", content(path));

  /* Streamed: nothing is visible at path until the commit. */
  jbx_atomic_file *f = jbx_atomic_open(path);
  CHECK(f != NULL, "%s", jbx_last_error());
  CHECK(jbx_atomic_write(f, "ab", 2) == 0 && jbx_atomic_write(f, "cd", 2) == 0, "%s", jbx_last_error());
  CHECK(strcmp(content(path), "{}\n") == 0, "old content until commit");
  CHECK(jbx_atomic_commit(f) == 0, "%s", jbx_last_error());
  CHECK(strcmp(content(path), "abcd") == 0, "streamed: %s", content(path));

  /* Abort: the old file stays, the temp file goes. */
  f = jbx_atomic_open(path);
  CHECK(f && jbx_atomic_write(f, "zz", 2) == 0, "%s", jbx_last_error());
  jbx_atomic_abort(f);
  jbx_atomic_abort(NULL);
  CHECK(strcmp(content(path), "abcd") == 0, "abort keeps the old file");
  CHECK(entries() == 1, "only the file, no temp file: %d entries", entries());

  /* Errors name the path, the step and the errno text. */
  CHECK(jbx_write_file_atomic(missing, "x", 1) == -1, "write into a missing folder");
  CHECK_ERROR_HAS("cannot write ");
  CHECK_ERROR_HAS(missing);
  CHECK_ERROR_HAS("creating temp file");
  CHECK_ERROR_HAS("No such file or directory");
  CHECK(jbx_atomic_open("") == NULL, "empty path");
  CHECK_ERROR_HAS("empty path");
  CHECK(jbx_write_file_atomic(dir, "x", 1) == -1, "over a folder");
  CHECK_ERROR_HAS("renaming temp file");
  CHECK(entries() == 1, "failed writes leave no temp file: %d entries", entries());

  unlink(path);
  rmdir(dir);
  return check_summary();
}
