/* Reads fixture files written by tools/fixtures/fixture_io.py: named float32/int32
 * arrays made once with PyTorch, so the tests never need Python. */
#ifndef JBX_FIXTURE_H
#define JBX_FIXTURE_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jbx_tensor.h"

#define FIXTURE_MAX 64

typedef struct fixture {
  int n;
  char names[FIXTURE_MAX][64];
  jbx_tensor *arrays[FIXTURE_MAX];
} fixture;

/* Loads every array of a fixture file (path relative to the source tree); NULL on error. */
static inline fixture *fixture_load(const char *relpath) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", JBX_SOURCE_DIR, relpath);
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "fixture: cannot open %s\n", path); return NULL; }
  char line[512];
  if (!fgets(line, sizeof line, f) || strcmp(line, "JBXFIX1\n") != 0) {
    fprintf(stderr, "fixture: %s is not a fixture file\n", path);
    fclose(f);
    return NULL;
  }
  fixture *fx = calloc(1, sizeof *fx);
  while (fx->n < FIXTURE_MAX && fgets(line, sizeof line, f)) {
    char dt[8];
    int ndim, off;
    if (sscanf(line, "%63s %7s %d%n", fx->names[fx->n], dt, &ndim, &off) != 3 || ndim > JBX_MAX_DIMS) break;
    int64_t shape[JBX_MAX_DIMS];
    char *p = line + off;
    for (int d = 0; d < ndim; d++) shape[d] = strtoll(p, &p, 10);
    jbx_tensor *t = jbx_empty(strcmp(dt, "i32") == 0 ? JBX_I32 : JBX_F32, ndim, shape);
    if (fread(t->storage->data, 4, (size_t)jbx_numel(t), f) != (size_t)jbx_numel(t)) {
      jbx_release(t);
      break;
    }
    fx->arrays[fx->n++] = t;
  }
  fclose(f);
  return fx;
}

/* The array called name (borrowed), or NULL with a message. */
static inline jbx_tensor *fixture_get(fixture *fx, const char *name) {
  for (int i = 0; fx && i < fx->n; i++)
    if (strcmp(fx->names[i], name) == 0) return fx->arrays[i];
  fprintf(stderr, "fixture: no array '%s'\n", name);
  return NULL;
}

static inline void fixture_free(fixture *fx) {
  if (!fx) return;
  for (int i = 0; i < fx->n; i++) jbx_release(fx->arrays[i]);
  free(fx);
}
#endif
