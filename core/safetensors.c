/* safetensors read/write, byte-compatible with the reference writer; files are written
 * through the core's atomic writer (core/atomic_file.c). */
#define _POSIX_C_SOURCE 200809L
#include "jbx_safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jbx_atomic_file.h"
#include "jbx_error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the file format is little-endian)"
#endif

/* The reference reader refuses headers above 100 MB; so do we (it also bounds malloc). */
#define ST_MAX_HEADER 100000000ull

/* ------------------------------------------------------------------ dtypes */

typedef enum { ST_F32, ST_I32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_NDTYPES } st_dtype;

static const char *const st_dtype_names[ST_NDTYPES] = {"F32", "I32", "F16", "BF16", "F64", "I64"};
static const int st_dtype_size[ST_NDTYPES] = {4, 4, 2, 2, 8, 8};

static int st_dtype_parse(const char *s) {
  for (int i = 0; i < ST_NDTYPES; i++)
    if (strcmp(s, st_dtype_names[i]) == 0) return i;
  return -1;
}

static jbx_dtype st_loaded_dtype(int d) { return (d == ST_I32 || d == ST_I64) ? JBX_I32 : JBX_F32; }

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13); /* inf / nan */
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else { /* subnormal half: a normal float */
    int e = -1;
    do {
      e++;
      man <<= 1;
    } while (!(man & 0x400));
    bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* ------------------------------------------------------------------ header writing */

static int cmp_cstr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Adds metadata_json's pairs to root as "__metadata__" with keys sorted (nothing when it
 * is empty), after checking it is an object of strings. */
static int add_metadata(cJSON *root, const char *path, const char *metadata_json) {
  cJSON *given = cJSON_Parse(metadata_json);
  if (!given) return jbx_fail("safetensors_save %s: metadata is not valid JSON", path);
  if (!cJSON_IsObject(given)) {
    cJSON_Delete(given);
    return jbx_fail("safetensors_save %s: metadata must be a JSON object of strings", path);
  }
  int n = cJSON_GetArraySize(given), k = 0, rc = 0;
  const char **keys = n ? malloc(sizeof *keys * (size_t)n) : NULL;
  if (n && !keys) rc = jbx_fail("safetensors_save %s: out of memory", path);
  for (cJSON *it = given->child; it && rc == 0; it = it->next) {
    if (!cJSON_IsString(it))
      rc = jbx_fail("safetensors_save %s: metadata value '%s' is not a string (safetensors metadata "
                    "holds strings only)", path, it->string);
    else
      keys[k++] = it->string;
  }
  if (rc == 0 && n > 0) {
    qsort(keys, (size_t)n, sizeof *keys, cmp_cstr);
    cJSON *sorted = cJSON_AddObjectToObject(root, "__metadata__");
    for (int i = 0; i < n && sorted; i++)
      if (!cJSON_AddStringToObject(sorted, keys[i], cJSON_GetObjectItemCaseSensitive(given, keys[i])->valuestring))
        sorted = NULL;
    if (!sorted) rc = jbx_fail("safetensors_save %s: out of memory", path);
  }
  free(keys);
  cJSON_Delete(given);
  return rc;
}

/* "[a,b,c]" as a raw JSON item: integers printed exactly, whatever their size. */
static bool add_uint_array(cJSON *obj, const char *key, int n, const uint64_t *v) {
  char buf[JBX_MAX_DIMS * 24 + 4];
  size_t len = 0;
  buf[len++] = '[';
  for (int i = 0; i < n; i++)
    len += (size_t)snprintf(buf + len, sizeof buf - len, i ? ",%llu" : "%llu", (unsigned long long)v[i]);
  buf[len++] = ']';
  buf[len] = '\0';
  return cJSON_AddRawToObject(obj, key, buf) != NULL;
}

typedef struct save_item {
  const char *name;
  jbx_tensor *t;
} save_item;

/* The reference writer's order: larger dtypes first (F32 before I32), then by name. */
static int cmp_save_item(const void *pa, const void *pb) {
  const save_item *a = pa, *b = pb;
  if (a->t->dtype != b->t->dtype) return a->t->dtype == JBX_F32 ? -1 : 1;
  return strcmp(a->name, b->name);
}

static int cmp_save_name(const void *pa, const void *pb) {
  return strcmp(((const save_item *)pa)->name, ((const save_item *)pb)->name);
}

int jbx_safetensors_save(const char *path, int n, const char *const *names,
                         jbx_tensor *const *tensors, const char *metadata_json) {
  if (!path || !*path) return jbx_fail("safetensors_save: empty path");
  if (n < 0 || (n > 0 && (!names || !tensors)))
    return jbx_fail("safetensors_save %s: bad tensor list", path);
  save_item *items = malloc(sizeof *items * (size_t)(n > 0 ? n : 1));
  if (!items) return jbx_fail("safetensors_save %s: out of memory", path);
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    items[i].name = names[i];
    items[i].t = tensors[i];
    if (!names[i] || !*names[i])
      rc = jbx_fail("safetensors_save %s: tensor %d has an empty name", path, i + 1);
    else if (strcmp(names[i], "__metadata__") == 0)
      rc = jbx_fail("safetensors_save %s: '__metadata__' is reserved, not a tensor name", path);
    else if (!tensors[i])
      rc = jbx_fail("safetensors_save %s: tensor '%s' is missing", path, names[i]);
    else if (tensors[i]->dtype != JBX_F32 && tensors[i]->dtype != JBX_I32)
      rc = jbx_fail("safetensors_save %s: tensor '%s' has an unknown dtype", path, names[i]);
  }
  if (rc == 0 && n > 1) {
    qsort(items, (size_t)n, sizeof *items, cmp_save_name);
    for (int i = 1; i < n && rc == 0; i++)
      if (strcmp(items[i - 1].name, items[i].name) == 0)
        rc = jbx_fail("safetensors_save %s: tensor name '%s' given twice", path, items[i].name);
    qsort(items, (size_t)n, sizeof *items, cmp_save_item);
  }

  /* The header, compact like the reference writer's (serde_json): metadata first, then
   * each tensor in the order above, with keys in insertion order. */
  cJSON *root = rc == 0 ? cJSON_CreateObject() : NULL;
  if (rc == 0 && !root) rc = jbx_fail("safetensors_save %s: out of memory", path);
  if (rc == 0 && metadata_json) rc = add_metadata(root, path, metadata_json);
  uint64_t offset = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    const jbx_tensor *t = items[i].t;
    uint64_t nbytes = (uint64_t)jbx_numel(t) * 4, shape[JBX_MAX_DIMS], range[2] = {offset, offset + nbytes};
    for (int d = 0; d < t->ndim; d++) shape[d] = (uint64_t)t->shape[d];
    cJSON *e = cJSON_AddObjectToObject(root, items[i].name);
    if (!e || !cJSON_AddStringToObject(e, "dtype", t->dtype == JBX_F32 ? "F32" : "I32") ||
        !add_uint_array(e, "shape", t->ndim, shape) || !add_uint_array(e, "data_offsets", 2, range))
      rc = jbx_fail("safetensors_save %s: out of memory", path);
    offset += nbytes;
  }
  char *header = rc == 0 ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  size_t hlen = header ? strlen(header) : 0, padded = (hlen + 7) / 8 * 8;
  char *grown = header ? realloc(header, padded + 1) : NULL;
  if (rc == 0 && !grown) rc = jbx_fail("safetensors_save %s: out of memory", path);
  if (grown) {
    header = grown;
    memset(header + hlen, ' ', padded - hlen); /* the reference pads with spaces to 8 bytes */
  }

  jbx_atomic_file *af = rc == 0 ? jbx_atomic_open(path) : NULL;
  if (rc == 0 && !af) rc = -1;
  if (af) {
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    rc = jbx_atomic_write(af, len8, 8);
    if (rc == 0) rc = jbx_atomic_write(af, header, padded);
    bool grad = jbx_set_grad_enabled(false);
    for (int i = 0; i < n && rc == 0; i++) {
      jbx_tensor *c = jbx_contiguous(items[i].t);
      if (!c) {
        rc = -1;
        break;
      }
      rc = jbx_atomic_write(af, jbx_f32(c), (size_t)jbx_numel(c) * 4);
      jbx_release(c);
    }
    jbx_set_grad_enabled(grad);
    if (rc == 0)
      rc = jbx_atomic_commit(af);
    else
      jbx_atomic_abort(af);
  }
  free(header);
  free(items);
  return rc;
}

/* ------------------------------------------------------------------ reading */

typedef struct st_entry {
  char *name;
  int dtype; /* st_dtype */
  int ndim;
  int64_t shape[JBX_MAX_DIMS];
  uint64_t begin, end; /* relative to the data area */
} st_entry;

struct jbx_safetensors {
  char *path;
  int fd;
  uint64_t data_start, data_len;
  int n;
  st_entry *e;   /* in offset order */
  int *by_name;  /* indices into e, sorted by name, for binary search */
  char *metadata;
};

/* 0 on success, -1 when the file ends early, else an errno value. */
static int pread_all(int fd, void *buf, size_t n, uint64_t off) {
  char *p = buf;
  while (n > 0) {
    size_t chunk = n > (1u << 30) ? (1u << 30) : n;
    ssize_t r = pread(fd, p, chunk, (off_t)off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno ? errno : EIO;
    }
    if (r == 0) return -1;
    p += r;
    n -= (size_t)r;
    off += (uint64_t)r;
  }
  return 0;
}

static int read_error(const char *path, int rc) {
  if (rc < 0) return jbx_fail("%s: file ended early while reading (truncated?)", path);
  return jbx_fail("%s: read failed: %s", path, strerror(rc));
}

/* A JSON number that is a non-negative integer below 2^53 (exact in a double). */
static bool json_uint(const cJSON *it, uint64_t *out) {
  if (!cJSON_IsNumber(it)) return false;
  double v = it->valuedouble;
  if (!(v >= 0 && v <= 9007199254740992.0) || v != floor(v)) return false;
  *out = (uint64_t)v;
  return true;
}

static void shape_text(const st_entry *e, char *buf, size_t size) {
  size_t n = (size_t)snprintf(buf, size, "[");
  for (int d = 0; d < e->ndim && n < size; d++)
    n += (size_t)snprintf(buf + n, size - n, d ? ", %lld" : "%lld", (long long)e->shape[d]);
  if (n < size) snprintf(buf + n, size - n, "]");
}

/* Fills e from a header entry; on error sets a message naming the file and tensor. */
static int parse_entry(const char *path, uint64_t data_len, const cJSON *it, st_entry *e) {
  const char *name = it->string;
  if (!cJSON_IsObject(it))
    return jbx_fail("%s: tensor '%s': header entry is not an object", path, name);
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
  const cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
  if (!cJSON_IsString(dt)) return jbx_fail("%s: tensor '%s' has no \"dtype\" string", path, name);
  e->dtype = st_dtype_parse(dt->valuestring);
  if (e->dtype < 0)
    return jbx_fail("%s: tensor '%s' has unknown dtype '%s' (supported: F32, I32, F16, BF16, F64, I64)",
                    path, name, dt->valuestring);
  if (!cJSON_IsArray(sh)) return jbx_fail("%s: tensor '%s' has no \"shape\" array", path, name);
  e->ndim = cJSON_GetArraySize(sh);
  if (e->ndim > JBX_MAX_DIMS)
    return jbx_fail("%s: tensor '%s' has %d dims, at most %d supported", path, name, e->ndim, JBX_MAX_DIMS);
  uint64_t numel = 1;
  bool huge = false;
  int d = 0;
  for (const cJSON *s = sh->child; s; s = s->next, d++) {
    uint64_t v;
    if (!json_uint(s, &v))
      return jbx_fail("%s: tensor '%s' has a shape entry that is not a non-negative integer", path, name);
    e->shape[d] = (int64_t)v;
    if (v && numel > (UINT64_C(1) << 62) / v) huge = true;
    numel *= v;
  }
  if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !json_uint(of->child, &e->begin) ||
      !json_uint(of->child->next, &e->end))
    return jbx_fail("%s: tensor '%s' needs \"data_offsets\" as [begin, end] integers", path, name);
  if (e->begin > e->end)
    return jbx_fail("%s: tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64 "] that run backwards",
                    path, name, e->begin, e->end);
  if (e->end > data_len)
    return jbx_fail("%s: tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64
                    "] out of range: the file holds %" PRIu64 " bytes of data",
                    path, name, e->begin, e->end, data_len);
  char sbuf[160];
  shape_text(e, sbuf, sizeof sbuf);
  uint64_t want = numel * (uint64_t)st_dtype_size[e->dtype];
  if (huge || want != e->end - e->begin)
    return jbx_fail("%s: tensor '%s' has %" PRIu64 " bytes (data_offsets [%" PRIu64 ", %" PRIu64
                    "]) but shape %s of %s needs %" PRIu64,
                    path, name, e->end - e->begin, e->begin, e->end, sbuf, st_dtype_names[e->dtype],
                    huge ? UINT64_MAX : want);
  e->name = strdup(name);
  if (!e->name) return jbx_fail("%s: out of memory", path);
  return 0;
}

static int cmp_entry_offset(const void *pa, const void *pb) {
  const st_entry *a = pa, *b = pb;
  if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
  if (a->end != b->end) return a->end < b->end ? -1 : 1;
  return strcmp(a->name, b->name);
}

static int cmp_entry_name(const void *pa, const void *pb) {
  return strcmp(((const st_entry *)pa)->name, ((const st_entry *)pb)->name);
}

/* qsort takes no context argument: the entries being sorted, per thread. */
static _Thread_local const st_entry *sort_entries;

static int cmp_index_name(const void *pa, const void *pb) {
  return strcmp(sort_entries[*(const int *)pa].name, sort_entries[*(const int *)pb].name);
}

/* Parses and validates the header text into st. */
static int parse_header(jbx_safetensors *st, const char *text, size_t len) {
  const char *path = st->path;
  size_t lead = 0;
  while (lead < len && (text[lead] == ' ' || text[lead] == '\n' || text[lead] == '\t' || text[lead] == '\r'))
    lead++;
  if (lead == len || text[lead] != '{')
    return jbx_fail("%s: header does not start with '{': not a safetensors file", path);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!root) {
    size_t pos = end && end >= text ? (size_t)(end - text) : 0;
    return jbx_fail("%s: header is not valid JSON (error near byte %zu of the %zu-byte header)", path,
                    pos, len);
  }
  int rc = 0;
  for (const char *p = end; p && p < text + len; p++)
    if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r' && *p != '\0') {
      rc = jbx_fail("%s: header has text after its JSON object (byte %zu)", path, (size_t)(p - text));
      break;
    }
  if (rc == 0 && !cJSON_IsObject(root)) rc = jbx_fail("%s: header is not a JSON object", path);
  int count = 0;
  if (rc == 0)
    for (cJSON *it = root->child; it; it = it->next) count += strcmp(it->string, "__metadata__") != 0;
  if (rc == 0) {
    st->e = calloc((size_t)(count ? count : 1), sizeof *st->e);
    if (!st->e) rc = jbx_fail("%s: out of memory", path);
  }
  for (cJSON *it = rc == 0 ? root->child : NULL; it && rc == 0; it = it->next) {
    if (strcmp(it->string, "__metadata__") == 0) {
      if (!cJSON_IsObject(it)) {
        rc = jbx_fail("%s: __metadata__ is not an object", path);
        break;
      }
      for (cJSON *m = it->child; m && rc == 0; m = m->next)
        if (!cJSON_IsString(m)) rc = jbx_fail("%s: __metadata__ value '%s' is not a string", path, m->string);
      if (rc == 0 && !st->metadata) {
        st->metadata = cJSON_PrintUnformatted(it);
        if (!st->metadata) rc = jbx_fail("%s: out of memory", path);
      }
      continue;
    }
    rc = parse_entry(path, st->data_len, it, &st->e[st->n]);
    if (rc == 0) st->n++;
  }
  cJSON_Delete(root);
  if (rc != 0) return rc;

  /* Duplicate keys: legal JSON, but ambiguous. */
  qsort(st->e, (size_t)st->n, sizeof *st->e, cmp_entry_name);
  for (int i = 1; i < st->n; i++)
    if (strcmp(st->e[i - 1].name, st->e[i].name) == 0)
      return jbx_fail("%s: tensor '%s' appears twice in the header", path, st->e[i].name);
  /* Overlaps between non-empty ranges (empty tensors may sit anywhere). */
  qsort(st->e, (size_t)st->n, sizeof *st->e, cmp_entry_offset);
  const st_entry *prev = NULL;
  for (int i = 0; i < st->n; i++) {
    const st_entry *e = &st->e[i];
    if (e->begin == e->end) continue;
    if (prev && e->begin < prev->end)
      return jbx_fail("%s: tensors '%s' [%" PRIu64 ", %" PRIu64 "] and '%s' [%" PRIu64 ", %" PRIu64
                      "] have overlapping data_offsets",
                      path, prev->name, prev->begin, prev->end, e->name, e->begin, e->end);
    prev = e;
  }
  st->by_name = malloc(sizeof *st->by_name * (st->n > 0 ? (size_t)st->n : 1));
  if (!st->by_name) return jbx_fail("%s: out of memory", path);
  for (int i = 0; i < st->n; i++) st->by_name[i] = i;
  sort_entries = st->e;
  qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_index_name);
  return 0;
}

jbx_safetensors *jbx_safetensors_open(const char *path) {
  if (!path) {
    jbx_fail("safetensors: no path given");
    return NULL;
  }
  jbx_safetensors *st = calloc(1, sizeof *st);
  if (!st || !(st->path = strdup(path))) {
    free(st);
    jbx_fail("%s: out of memory", path);
    return NULL;
  }
  st->fd = -1;
  st->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (st->fd < 0) {
    jbx_fail("cannot open %s: %s", path, strerror(errno));
    jbx_safetensors_close(st);
    return NULL;
  }
  struct stat sb;
  if (fstat(st->fd, &sb) != 0) {
    jbx_fail("cannot stat %s: %s", path, strerror(errno));
    jbx_safetensors_close(st);
    return NULL;
  }
  if (S_ISDIR(sb.st_mode)) {
    jbx_fail("%s: is a directory, not a safetensors file", path);
    jbx_safetensors_close(st);
    return NULL;
  }
  uint64_t size = (uint64_t)sb.st_size;
  if (size < 8) {
    jbx_fail("%s: file is %" PRIu64 " bytes, too short for a safetensors file (needs an 8-byte header length)",
             path, size);
    jbx_safetensors_close(st);
    return NULL;
  }
  uint8_t len8[8];
  int rrc = pread_all(st->fd, len8, 8, 0);
  if (rrc != 0) {
    read_error(path, rrc);
    jbx_safetensors_close(st);
    return NULL;
  }
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
  if (hlen > ST_MAX_HEADER && hlen <= size - 8) {
    jbx_fail("%s: header length %" PRIu64 " is above the 100 MB limit: not a safetensors file", path, hlen);
    jbx_safetensors_close(st);
    return NULL;
  }
  if (hlen > size - 8) {
    jbx_fail("%s: header length %" PRIu64 " runs beyond the end of the file (%" PRIu64
             " bytes): truncated or not a safetensors file",
             path, hlen, size);
    jbx_safetensors_close(st);
    return NULL;
  }
  st->data_start = 8 + hlen;
  st->data_len = size - 8 - hlen;
  char *text = malloc(hlen + 1);
  if (!text) {
    jbx_fail("%s: out of memory reading a %" PRIu64 "-byte header", path, hlen);
    jbx_safetensors_close(st);
    return NULL;
  }
  rrc = pread_all(st->fd, text, hlen, 8);
  text[hlen] = '\0';
  int rc = rrc != 0 ? read_error(path, rrc) : parse_header(st, text, hlen);
  free(text);
  if (rc != 0) {
    jbx_safetensors_close(st);
    return NULL;
  }
  return st;
}

void jbx_safetensors_close(jbx_safetensors *st) {
  if (!st) return;
  if (st->fd >= 0) close(st->fd);
  for (int i = 0; i < st->n; i++) free(st->e[i].name);
  free(st->e);
  free(st->by_name);
  if (st->metadata) cJSON_free(st->metadata);
  free(st->path);
  free(st);
}

const char *jbx_safetensors_path(const jbx_safetensors *st) { return st->path; }
int jbx_safetensors_count(const jbx_safetensors *st) { return st->n; }

const char *jbx_safetensors_name(const jbx_safetensors *st, int i) {
  return i >= 0 && i < st->n ? st->e[i].name : NULL;
}

int jbx_safetensors_find(const jbx_safetensors *st, const char *name) {
  int lo = 0, hi = st->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2, i = st->by_name[mid];
    int c = strcmp(name, st->e[i].name);
    if (c == 0) return i;
    if (c < 0)
      hi = mid - 1;
    else
      lo = mid + 1;
  }
  return -1;
}

const char *jbx_safetensors_dtype_str(const jbx_safetensors *st, int i) {
  return i >= 0 && i < st->n ? st_dtype_names[st->e[i].dtype] : NULL;
}

jbx_dtype jbx_safetensors_dtype(const jbx_safetensors *st, int i) {
  return i >= 0 && i < st->n ? st_loaded_dtype(st->e[i].dtype) : JBX_F32;
}

int jbx_safetensors_shape(const jbx_safetensors *st, int i, int64_t *shape) {
  if (i < 0 || i >= st->n) return -1;
  for (int d = 0; d < st->e[i].ndim; d++) shape[d] = st->e[i].shape[d];
  return st->e[i].ndim;
}

const char *jbx_safetensors_metadata(const jbx_safetensors *st) { return st->metadata; }

/* Reads entry e into out (contiguous, numel elements of the loaded dtype), converting. */
static int read_entry(jbx_safetensors *st, const st_entry *e, void *out) {
  uint64_t nbytes = e->end - e->begin;
  if (nbytes == 0) return 0;
  int rc;
  if (e->dtype == ST_F32 || e->dtype == ST_I32) {
    rc = pread_all(st->fd, out, nbytes, st->data_start + e->begin);
    return rc ? read_error(st->path, rc) : 0;
  }
  void *raw = malloc(nbytes);
  if (!raw) return jbx_fail("%s: out of memory reading tensor '%s'", st->path, e->name);
  rc = pread_all(st->fd, raw, nbytes, st->data_start + e->begin);
  if (rc) {
    free(raw);
    return read_error(st->path, rc);
  }
  uint64_t n = nbytes / (uint64_t)st_dtype_size[e->dtype];
  float *f = out;
  int32_t *o = out;
  switch (e->dtype) {
    case ST_F16:
      for (uint64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, (char *)raw + 2 * i, 2);
        f[i] = half_to_float(h);
      }
      break;
    case ST_BF16:
      for (uint64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, (char *)raw + 2 * i, 2);
        uint32_t bits = (uint32_t)h << 16;
        memcpy(&f[i], &bits, 4);
      }
      break;
    case ST_F64:
      for (uint64_t i = 0; i < n; i++) {
        double v;
        memcpy(&v, (char *)raw + 8 * i, 8);
        f[i] = (float)v;
      }
      break;
    case ST_I64:
      for (uint64_t i = 0; i < n && rc == 0; i++) {
        int64_t v;
        memcpy(&v, (char *)raw + 8 * i, 8);
        if (v < INT32_MIN || v > INT32_MAX)
          rc = jbx_fail("%s: tensor '%s' (I64) holds %lld, outside the int32 range", st->path, e->name,
                        (long long)v);
        o[i] = (int32_t)v;
      }
      break;
    default: break;
  }
  free(raw);
  return rc;
}

static const st_entry *find_entry(jbx_safetensors *st, const char *name) {
  int i = name ? jbx_safetensors_find(st, name) : -1;
  if (i < 0) {
    jbx_fail("%s: no tensor named '%s'", st->path, name ? name : "(null)");
    return NULL;
  }
  return &st->e[i];
}

jbx_tensor *jbx_safetensors_get(jbx_safetensors *st, const char *name) {
  const st_entry *e = find_entry(st, name);
  if (!e) return NULL;
  jbx_tensor *t = jbx_empty(st_loaded_dtype(e->dtype), e->ndim, e->shape);
  if (!t) return NULL;
  if (read_entry(st, e, jbx_f32(t)) != 0) {
    jbx_release(t);
    return NULL;
  }
  return t;
}

int jbx_safetensors_read_into(jbx_safetensors *st, const char *name, jbx_tensor *dst) {
  const st_entry *e = find_entry(st, name);
  if (!e) return -1;
  char a[160], b[160];
  bool same = dst->ndim == e->ndim;
  for (int d = 0; same && d < e->ndim; d++) same = dst->shape[d] == e->shape[d];
  if (!same) {
    shape_text(e, a, sizeof a);
    return jbx_fail("%s: %s has shape %s, destination has %s", st->path, name, a,
                    jbx_shape_str(dst, b, sizeof b));
  }
  jbx_dtype want = st_loaded_dtype(e->dtype);
  if (dst->dtype != want)
    return jbx_fail("%s: %s has dtype %s, destination is %s", st->path, name, st_dtype_names[e->dtype],
                    dst->dtype == JBX_F32 ? "F32" : "I32");
  if (jbx_is_contiguous(dst)) return read_entry(st, e, jbx_f32(dst));
  jbx_tensor *tmp = jbx_safetensors_get(st, name);
  if (!tmp) return -1;
  int rc = jbx_copy_(dst, tmp);
  jbx_release(tmp);
  return rc;
}
