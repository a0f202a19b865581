/* safetensors files (the format the PyTorch ecosystem shares weights in).
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON header, then the raw
 * tensor data. The header maps each tensor name to {"dtype", "shape", "data_offsets":
 * [begin, end]} (offsets relative to the data area) plus an optional "__metadata__"
 * object whose values are strings. We write F32 and I32; we read F32, I32 and also
 * F16, BF16, F64 (converted to F32) and I64 (converted to I32, range-checked), so
 * half-precision reference weights can be loaded. */
#ifndef JBX_SAFETENSORS_H
#define JBX_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#include "jbx_tensor.h"

/* Writes n tensors (F32 or I32, any strides) under the given unique names, with
 * metadata_json (a JSON object whose values are strings, or NULL) as "__metadata__".
 * Atomic (jbx_atomic_file.h): a temp file in the same folder, fsync, rename, fsync folder.
 * On failure the temp file is removed, an existing file at path is left intact, and
 * the message names the path. Returns 0 or -1. */
int jbx_safetensors_save(const char *path, int n, const char *const *names,
                         jbx_tensor *const *tensors, const char *metadata_json);

/* An open file: the parsed and validated header; data is read on demand. */
typedef struct jbx_safetensors jbx_safetensors;

/* Opens and validates path (sizes, JSON, dtypes, shapes, offsets). NULL on error. */
jbx_safetensors *jbx_safetensors_open(const char *path);
void jbx_safetensors_close(jbx_safetensors *st); /* NULL-safe */

const char *jbx_safetensors_path(const jbx_safetensors *st);
int jbx_safetensors_count(const jbx_safetensors *st);
/* Tensors in the order of their data offsets; NULL when i is out of range. */
const char *jbx_safetensors_name(const jbx_safetensors *st, int i);
int jbx_safetensors_find(const jbx_safetensors *st, const char *name); /* index or -1 */
/* The dtype as written in the file ("F32", "F16", ...). */
const char *jbx_safetensors_dtype_str(const jbx_safetensors *st, int i);
/* The dtype a loaded tensor gets (JBX_F32 or JBX_I32). */
jbx_dtype jbx_safetensors_dtype(const jbx_safetensors *st, int i);
/* Copies the shape into shape[JBX_MAX_DIMS] and returns ndim (-1 when i is out of range). */
int jbx_safetensors_shape(const jbx_safetensors *st, int i, int64_t *shape);
/* "__metadata__" as a compact JSON object string, or NULL when the file has none. */
const char *jbx_safetensors_metadata(const jbx_safetensors *st);

/* A new contiguous tensor holding a copy of the named tensor; NULL on error. */
jbx_tensor *jbx_safetensors_get(jbx_safetensors *st, const char *name);
/* Reads the named tensor into dst (same shape and loaded dtype, any strides). 0 or -1. */
int jbx_safetensors_read_into(jbx_safetensors *st, const char *name, jbx_tensor *dst);

#endif
