/* safetensors: round trips, byte-level layout, the reference fixture written by hand in
 * Python, every corrupt-file error, and atomic writes. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "jbx_error.h"
#include "jbx_safetensors.h"
#include "jbx_tensor.h"

static char tmpdir[64];

static const char *tmp_path(const char *name) {
  static char buf[4][256];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
  return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fwrite(data, 1, n, f);
  fclose(f);
}

static char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *p = malloc((size_t)len + 1);
  *n = fread(p, 1, (size_t)len, f);
  p[*n] = '\0';
  fclose(f);
  return p;
}

/* A file made by hand: 8-byte LE length, header (as given, unpadded), then data. */
static const char *handmade(const char *name, const char *header, const void *data, size_t ndata) {
  const char *path = tmp_path(name);
  size_t hl = strlen(header);
  char *buf = malloc(8 + hl + ndata);
  for (int i = 0; i < 8; i++) buf[i] = (char)(((uint64_t)hl >> (8 * i)) & 0xff);
  memcpy(buf + 8, header, hl);
  if (ndata) memcpy(buf + 8 + hl, data, ndata);
  write_bytes(path, buf, 8 + hl + ndata);
  free(buf);
  return path;
}

static int count_tmp_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  if (!d) return 0;
  for (struct dirent *e; (e = readdir(d));)
    if (strstr(e->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

static bool exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

static void test_round_trip(void) {
  int64_t s23[2] = {2, 3}, s4[1] = {4}, s32[2] = {3, 2};
  float w[6] = {1, -2, 3.5f, 0, 1e-30f, -7};
  int32_t codes[4] = {0, -5, 2147483647, 12};
  float m[6] = {1, 2, 3, 4, 5, 6};
  jbx_tensor *a = jbx_from_floats(2, s23, w);
  jbx_tensor *c = jbx_from_ints(1, s4, codes);
  jbx_tensor *s = jbx_scalar(42.25f);
  jbx_tensor *base = jbx_from_floats(2, s32, m);
  jbx_tensor *tr = jbx_transpose(base, 0, 1); /* non-contiguous [2, 3] */
  const char *names[4] = {"layer.weight", "codes", "scale", "transposed"};
  jbx_tensor *ts[4] = {a, c, s, tr};
  const char *path = tmp_path("round.safetensors");
  int rc = jbx_safetensors_save(path, 4, names, ts, "{\"jukebox\":\"{\\\"step\\\":3}\",\"format\":\"pt\"}");
  CHECK(rc == 0, "save: %s", jbx_last_error());
  CHECK(count_tmp_files(tmpdir) == 0, "temp file left behind");

  jbx_safetensors *st = jbx_safetensors_open(path);
  CHECK(st != NULL, "open: %s", jbx_last_error());
  if (!st) return;
  CHECK(jbx_safetensors_count(st) == 4, "count %d", jbx_safetensors_count(st));
  /* Offset order = the reference's order: F32 by name, then I32. */
  CHECK(strcmp(jbx_safetensors_name(st, 0), "layer.weight") == 0, "%s", jbx_safetensors_name(st, 0));
  CHECK(strcmp(jbx_safetensors_name(st, 1), "scale") == 0, "%s", jbx_safetensors_name(st, 1));
  CHECK(strcmp(jbx_safetensors_name(st, 2), "transposed") == 0, "%s", jbx_safetensors_name(st, 2));
  CHECK(strcmp(jbx_safetensors_name(st, 3), "codes") == 0, "%s", jbx_safetensors_name(st, 3));
  CHECK(jbx_safetensors_name(st, 4) == NULL, "name out of range");
  CHECK(strcmp(jbx_safetensors_metadata(st), "{\"format\":\"pt\",\"jukebox\":\"{\\\"step\\\":3}\"}") == 0,
        "metadata %s", jbx_safetensors_metadata(st));

  int64_t shape[JBX_MAX_DIMS];
  int i = jbx_safetensors_find(st, "scale");
  CHECK(jbx_safetensors_shape(st, i, shape) == 0, "0-dim");
  CHECK(strcmp(jbx_safetensors_dtype_str(st, jbx_safetensors_find(st, "codes")), "I32") == 0, "dtype");
  CHECK(jbx_safetensors_dtype(st, jbx_safetensors_find(st, "codes")) == JBX_I32, "dtype");

  jbx_tensor *a2 = jbx_safetensors_get(st, "layer.weight");
  CHECK(a2 && a2->ndim == 2 && a2->shape[0] == 2 && a2->shape[1] == 3, "shape");
  for (int k = 0; a2 && k < 6; k++) CHECK(jbx_f32(a2)[k] == w[k], "w[%d]", k);
  jbx_tensor *c2 = jbx_safetensors_get(st, "codes");
  CHECK(c2 && c2->dtype == JBX_I32, "codes dtype");
  for (int k = 0; c2 && k < 4; k++) CHECK(jbx_i32(c2)[k] == codes[k], "codes[%d]", k);
  jbx_tensor *s2 = jbx_safetensors_get(st, "scale");
  CHECK(s2 && s2->ndim == 0 && jbx_f32(s2)[0] == 42.25f, "scalar");
  jbx_tensor *t2 = jbx_safetensors_get(st, "transposed");
  for (int k = 0; t2 && k < 6; k++) CHECK(jbx_f32(t2)[k] == (float)jbx_get(tr, k), "transposed[%d]", k);

  /* read_into: a contiguous and a strided destination, and mismatches. */
  jbx_tensor *dst = jbx_zeros(2, s23);
  CHECK(jbx_safetensors_read_into(st, "layer.weight", dst) == 0, "%s", jbx_last_error());
  CHECK(jbx_f32(dst)[2] == 3.5f, "read_into value");
  jbx_tensor *dbase = jbx_zeros(2, s32);
  jbx_tensor *dview = jbx_transpose(dbase, 0, 1);
  CHECK(jbx_safetensors_read_into(st, "layer.weight", dview) == 0, "%s", jbx_last_error());
  CHECK(jbx_get(dview, 1) == -2 && jbx_f32(dbase)[2] == -2, "strided read_into");
  jbx_tensor *wrong = jbx_zeros(2, s32);
  CHECK(jbx_safetensors_read_into(st, "layer.weight", wrong) == -1, "shape mismatch");
  CHECK_ERROR_HAS("round.safetensors: layer.weight has shape [2, 3], destination has [3, 2]");
  jbx_tensor *wrongdt = jbx_zeros(1, s4);
  CHECK(jbx_safetensors_read_into(st, "codes", wrongdt) == -1, "dtype mismatch");
  CHECK_ERROR_HAS("codes has dtype I32, destination is F32");
  CHECK(jbx_safetensors_get(st, "nope") == NULL, "missing name");
  CHECK_ERROR_HAS("round.safetensors: no tensor named 'nope'");

  jbx_release(a2);
  jbx_release(c2);
  jbx_release(s2);
  jbx_release(t2);
  jbx_release(dst);
  jbx_release(dview);
  jbx_release(dbase);
  jbx_release(wrong);
  jbx_release(wrongdt);
  jbx_safetensors_close(st);
  jbx_release(a);
  jbx_release(c);
  jbx_release(s);
  jbx_release(tr);
  jbx_release(base);
}

/* The writer's exact bytes, spelled out from the spec. */
static void test_exact_bytes(void) {
  int64_t s2[1] = {2};
  float fb[2] = {1.0f, -2.0f};
  int32_t ia = 7;
  jbx_tensor *b = jbx_from_floats(1, s2, fb);
  jbx_tensor *a = jbx_from_ints(0, NULL, &ia);
  const char *names[2] = {"a", "b"};
  jbx_tensor *ts[2] = {a, b};
  const char *path = tmp_path("exact.safetensors");
  CHECK(jbx_safetensors_save(path, 2, names, ts, "{\"k\":\"v\\n\"}") == 0, "%s", jbx_last_error());
  const char *hdr = "{\"__metadata__\":{\"k\":\"v\\n\"},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"a\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[8,12]}}";
  size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
  unsigned char want[512];
  memset(want, 0, sizeof want);
  for (int i = 0; i < 8; i++) want[i] = (unsigned char)(padded >> (8 * i));
  memcpy(want + 8, hdr, hl);
  memset(want + 8 + hl, ' ', padded - hl);
  memcpy(want + 8 + padded, fb, 8);
  memcpy(want + 16 + padded, &ia, 4);
  size_t n = 0;
  char *got = read_all(path, &n);
  CHECK(got && n == 20 + padded, "file size %zu, want %zu", n, 20 + padded);
  CHECK(got && n == 20 + padded && memcmp(got, want, n) == 0, "bytes differ: %s", got ? got + 8 : "");
  free(got);

  /* No tensors, no metadata: "{}" padded to 8 bytes. */
  path = tmp_path("empty.safetensors");
  CHECK(jbx_safetensors_save(path, 0, NULL, NULL, NULL) == 0, "%s", jbx_last_error());
  got = read_all(path, &n);
  CHECK(got && n == 16 && memcmp(got, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0, "empty file");
  free(got);
  jbx_safetensors *st = jbx_safetensors_open(path);
  CHECK(st && jbx_safetensors_count(st) == 0 && jbx_safetensors_metadata(st) == NULL, "empty open");
  jbx_safetensors_close(st);
  jbx_release(a);
  jbx_release(b);
}

/* A hand-written file in an order our writer would not use, with a gap and no padding. */
static void test_handmade_read(void) {
  float data[5] = {9, 8, 7, 6, 5};
  const char *path = handmade(
      "hand.safetensors",
      " {\"y\":{\"data_offsets\":[12,20],\"shape\":[1,2],\"dtype\":\"F32\"},"
      "\"x\":{\"shape\":[2],\"dtype\":\"F32\",\"data_offsets\":[0,8]},\"__metadata__\":{}}\n",
      data, sizeof data);
  jbx_safetensors *st = jbx_safetensors_open(path);
  CHECK(st != NULL, "open hand-made: %s", jbx_last_error());
  if (!st) return;
  CHECK(jbx_safetensors_count(st) == 2, "count");
  CHECK(strcmp(jbx_safetensors_name(st, 0), "x") == 0, "offset order");
  CHECK(strcmp(jbx_safetensors_metadata(st), "{}") == 0, "metadata");
  jbx_tensor *y = jbx_safetensors_get(st, "y");
  CHECK(y && y->ndim == 2 && jbx_f32(y)[0] == 6 && jbx_f32(y)[1] == 5, "y values");
  jbx_release(y);
  jbx_safetensors_close(st);
}

static void test_reference_fixture(void) {
  jbx_safetensors *st = jbx_safetensors_open(JBX_SOURCE_DIR "/tests/fixtures/io/reference.safetensors");
  CHECK(st != NULL, "open reference: %s", jbx_last_error());
  if (!st) return;
  CHECK(jbx_safetensors_count(st) == 10, "count %d", jbx_safetensors_count(st));
  CHECK(strcmp(jbx_safetensors_metadata(st),
               "{\"format\":\"pt\",\"jukebox\":\"{\\\"step\\\": 300, \\\"lr\\\": 0.0003}\"}") == 0,
        "metadata %s", jbx_safetensors_metadata(st));
  jbx_tensor *w = jbx_safetensors_get(st, "encoder.0.weight");
  CHECK(w && w->ndim == 2 && w->shape[0] == 2 && w->shape[1] == 3, "weight shape");
  for (int k = 0; w && k < 6; k++) CHECK(jbx_f32(w)[k] == k * 0.5f - 1.0f, "weight[%d]", k);
  jbx_tensor *b = jbx_safetensors_get(st, "encoder.0.bias");
  CHECK(b && jbx_f32(b)[0] == 0.25f && jbx_f32(b)[1] == -0.125f && jbx_f32(b)[2] == 3.0f, "bias");
  jbx_tensor *s = jbx_safetensors_get(st, "step_scale");
  CHECK(s && s->ndim == 0 && jbx_f32(s)[0] == 7.5f, "0-dim");
  jbx_tensor *c = jbx_safetensors_get(st, "codes");
  CHECK(c && c->dtype == JBX_I32 && jbx_i32(c)[0] == 3 && jbx_i32(c)[1] == -1 &&
            jbx_i32(c)[2] == 2147483647 && jbx_i32(c)[3] == 0, "codes");
  jbx_tensor *h = jbx_safetensors_get(st, "half");
  CHECK(h && jbx_f32(h)[0] == 1.0f && jbx_f32(h)[1] == -2.5f && jbx_f32(h)[2] == 65504.0f &&
            jbx_f32(h)[3] == 6.1035156e-05f, "f16");
  jbx_tensor *hs = jbx_safetensors_get(st, "halfsub");
  CHECK(hs && jbx_f32(hs)[0] == 5.9604645e-08f && jbx_f32(hs)[1] == 0 && signbit(jbx_f32(hs)[1]),
        "f16 subnormal / -0: %g %g", hs ? jbx_f32(hs)[0] : 0, hs ? jbx_f32(hs)[1] : 0);
  jbx_tensor *bf = jbx_safetensors_get(st, "brain");
  CHECK(bf && jbx_f32(bf)[0] == 1.0f && jbx_f32(bf)[1] == -3.140625f, "bf16");
  jbx_tensor *d = jbx_safetensors_get(st, "double");
  CHECK(d && jbx_f32(d)[0] == 0.1f && jbx_f32(d)[1] == -1e10f, "f64");
  jbx_tensor *l = jbx_safetensors_get(st, "long");
  CHECK(l && l->dtype == JBX_I32 && jbx_i32(l)[0] == 5 && jbx_i32(l)[1] == -7 && jbx_i32(l)[2] == 2147483647,
        "i64");
  CHECK(strcmp(jbx_safetensors_dtype_str(st, jbx_safetensors_find(st, "long")), "I64") == 0, "I64 name");
  jbx_tensor *e = jbx_safetensors_get(st, "empty");
  CHECK(e && e->ndim == 2 && e->shape[0] == 0 && e->shape[1] == 4, "empty tensor");
  jbx_release(w);
  jbx_release(b);
  jbx_release(s);
  jbx_release(c);
  jbx_release(h);
  jbx_release(hs);
  jbx_release(bf);
  jbx_release(d);
  jbx_release(l);
  jbx_release(e);
  jbx_safetensors_close(st);

  /* Byte for byte: re-saving the F32/I32 reference file with our writer reproduces it. */
  const char *ref = JBX_SOURCE_DIR "/tests/fixtures/io/reference_f32_i32.safetensors";
  st = jbx_safetensors_open(ref);
  CHECK(st != NULL, "open reference_f32_i32: %s", jbx_last_error());
  if (!st) return;
  int n = jbx_safetensors_count(st);
  const char *names[16];
  jbx_tensor *ts[16];
  for (int i = 0; i < n && i < 16; i++) {
    names[i] = jbx_safetensors_name(st, i);
    ts[i] = jbx_safetensors_get(st, names[i]);
  }
  const char *path = tmp_path("resaved.safetensors");
  CHECK(n == 5 && jbx_safetensors_save(path, n, names, ts, jbx_safetensors_metadata(st)) == 0, "resave: %s",
        jbx_last_error());
  size_t na = 0, nb = 0;
  char *want = read_all(ref, &na), *got = read_all(path, &nb);
  CHECK(want && got && na == nb && memcmp(want, got, na) == 0, "re-saved file differs from the reference");
  free(want);
  free(got);
  for (int i = 0; i < n && i < 16; i++) jbx_release(ts[i]);
  jbx_safetensors_close(st);
}

static void expect_open_error(const char *path, const char *part) {
  jbx_safetensors *st = jbx_safetensors_open(path);
  CHECK(st == NULL, "%s opened", path);
  jbx_safetensors_close(st);
  CHECK_ERROR_HAS(part);
}

static void test_corrupt_files(void) {
  float data[4] = {1, 2, 3, 4};
  const char *p = tmp_path("short.safetensors");
  write_bytes(p, "\x05\0\0", 3);
  expect_open_error(p, "short.safetensors: file is 3 bytes, too short");

  p = handmade("hdrlen.safetensors", "{}", NULL, 0);
  {
    /* Claim a 4096-byte header in a 10-byte file. */
    FILE *f = fopen(p, "r+b");
    fputc(0x00, f);
    fputc(0x10, f);
    fclose(f);
  }
  expect_open_error(p, "hdrlen.safetensors: header length 4096 runs beyond the end of the file (10 bytes)");

  expect_open_error(handmade("json.safetensors", "{\"a\":{\"dtype\":\"F32\",}", NULL, 0),
                    "json.safetensors: header is not valid JSON (error near byte 20");
  expect_open_error(handmade("notjson.safetensors", "PK\x03\x04zipfile", NULL, 0),
                    "notjson.safetensors: header does not start with '{'");
  expect_open_error(handmade("trail.safetensors", "{} x", NULL, 0),
                    "trail.safetensors: header has text after its JSON object");
  expect_open_error(handmade("dtype.safetensors",
                             "{\"w\":{\"dtype\":\"Q7\",\"shape\":[4],\"data_offsets\":[0,16]}}", data, 16),
                    "dtype.safetensors: tensor 'w' has unknown dtype 'Q7'");
  expect_open_error(handmade("bool.safetensors",
                             "{\"w\":{\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[0,4]}}", data, 16),
                    "tensor 'w' has unknown dtype 'BOOL' (supported: F32, I32");
  expect_open_error(handmade("range.safetensors",
                             "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[4,20]}}", data, 16),
                    "range.safetensors: tensor 'w' has data_offsets [4, 20] out of range: the file holds "
                    "16 bytes of data");
  expect_open_error(handmade("back.safetensors",
                             "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", data, 16),
                    "back.safetensors: tensor 'w' has data_offsets [8, 4] that run backwards");
  expect_open_error(handmade("size.safetensors",
                             "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", data, 16),
                    "size.safetensors: tensor 'w' has 16 bytes (data_offsets [0, 16]) but shape [2, 3] of "
                    "F32 needs 24");
  expect_open_error(handmade("overlap.safetensors",
                             "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                             "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                             data, 16),
                    "overlap.safetensors: tensors 'a' [0, 12] and 'b' [8, 16] have overlapping data_offsets");
  expect_open_error(handmade("neg.safetensors",
                             "{\"w\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", data, 16),
                    "tensor 'w' has a shape entry that is not a non-negative integer");
  expect_open_error(handmade("offs.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}}",
                             data, 16),
                    "tensor 'w' needs \"data_offsets\" as [begin, end] integers");
  expect_open_error(handmade("nodtype.safetensors", "{\"w\":{\"shape\":[4],\"data_offsets\":[0,16]}}", data, 16),
                    "tensor 'w' has no \"dtype\" string");
  expect_open_error(handmade("noshape.safetensors", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", data,
                             16),
                    "tensor 'w' has no \"shape\" array");
  expect_open_error(handmade("dims.safetensors",
                             "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,4],\"data_offsets\":[0,16]}}",
                             data, 16),
                    "tensor 'w' has 9 dims, at most 8 supported");
  expect_open_error(handmade("huge.safetensors",
                             "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,16]}}",
                             data, 16),
                    "tensor 'w' has 16 bytes");
  expect_open_error(handmade("meta.safetensors", "{\"__metadata__\":{\"step\":3}}", NULL, 0),
                    "meta.safetensors: __metadata__ value 'step' is not a string");
  expect_open_error(handmade("dup.safetensors",
                             "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                             "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                             data, 16),
                    "dup.safetensors: tensor 'w' appears twice");
  expect_open_error(handmade("arr.safetensors", "[1, 2]", NULL, 0), "header does not start with '{'");
  expect_open_error(tmp_path("missing.safetensors"), "cannot open ");
  CHECK_ERROR_HAS("missing.safetensors: No such file or directory");
  expect_open_error(tmpdir, "is a directory");

  /* I64 values outside int32 fail at get time, naming the tensor. */
  int64_t big[2] = {1, (int64_t)1 << 40};
  jbx_safetensors *st = jbx_safetensors_open(
      handmade("i64.safetensors", "{\"n\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", big, 16));
  CHECK(st != NULL, "open i64: %s", jbx_last_error());
  if (st) {
    CHECK(jbx_safetensors_get(st, "n") == NULL, "i64 overflow");
    CHECK_ERROR_HAS("i64.safetensors: tensor 'n' (I64) holds 1099511627776, outside the int32 range");
    jbx_safetensors_close(st);
  }
  /* A file truncated after a valid open (data gone when read). */
  const char *tp = handmade("gone.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                            data, 16);
  st = jbx_safetensors_open(tp);
  CHECK(st != NULL, "open gone: %s", jbx_last_error());
  if (st) {
    CHECK(truncate(tp, 20) == 0, "truncate");
    CHECK(jbx_safetensors_get(st, "w") == NULL, "read after truncate");
    CHECK_ERROR_HAS("gone.safetensors: file ended early while reading");
    jbx_safetensors_close(st);
  }
}

static void test_save_errors(void) {
  jbx_tensor *a = jbx_scalar(1);
  jbx_tensor *ts[2] = {a, a};
  const char *dup[2] = {"x", "x"};
  const char *path = tmp_path("bad.safetensors");
  CHECK(jbx_safetensors_save(path, 2, dup, ts, NULL) == -1, "duplicate");
  CHECK_ERROR_HAS("bad.safetensors: tensor name 'x' given twice");
  const char *empty[1] = {""};
  CHECK(jbx_safetensors_save(path, 1, empty, ts, NULL) == -1, "empty name");
  CHECK_ERROR_HAS("tensor 1 has an empty name");
  const char *meta[1] = {"__metadata__"};
  CHECK(jbx_safetensors_save(path, 1, meta, ts, NULL) == -1, "reserved");
  CHECK_ERROR_HAS("'__metadata__' is reserved");
  jbx_tensor *none[1] = {NULL};
  CHECK(jbx_safetensors_save(path, 1, dup, none, NULL) == -1, "null tensor");
  CHECK_ERROR_HAS("tensor 'x' is missing");
  CHECK(jbx_safetensors_save(path, 1, dup, ts, "[1]") == -1, "metadata array");
  CHECK_ERROR_HAS("metadata must be a JSON object of strings");
  CHECK(jbx_safetensors_save(path, 1, dup, ts, "{\"step\": 3}") == -1, "metadata number");
  CHECK_ERROR_HAS("metadata value 'step' is not a string");
  CHECK(jbx_safetensors_save(path, 1, dup, ts, "{\"a\": ") == -1, "metadata json");
  CHECK_ERROR_HAS("metadata is not valid JSON");
  CHECK(!exists(path) && count_tmp_files(tmpdir) == 0, "failed saves left files");
  jbx_release(a);
}

static void test_atomic(void) {
  jbx_tensor *one = jbx_scalar(1), *two = jbx_scalar(2);
  const char *names[1] = {"v"};
  /* Into a directory that does not exist: fails cleanly, names path and errno text. */
  const char *nodir = tmp_path("nodir/ckpt.safetensors");
  CHECK(jbx_safetensors_save(nodir, 1, names, &one, NULL) == -1, "save into missing dir");
  CHECK_ERROR_HAS("nodir/ckpt.safetensors");
  CHECK_ERROR_HAS("No such file or directory");
  CHECK(!exists(tmp_path("nodir")), "dir created");

  /* Over an existing file: replaced. */
  const char *path = tmp_path("over.safetensors");
  CHECK(jbx_safetensors_save(path, 1, names, &one, NULL) == 0, "%s", jbx_last_error());
  CHECK(jbx_safetensors_save(path, 1, names, &two, "{\"v\":\"2\"}") == 0, "%s", jbx_last_error());
  jbx_safetensors *st = jbx_safetensors_open(path);
  jbx_tensor *v = st ? jbx_safetensors_get(st, "v") : NULL;
  CHECK(v && jbx_f32(v)[0] == 2.0f, "replaced value");
  jbx_release(v);
  jbx_safetensors_close(st);

  /* A failure after the temp file exists (rename onto a non-empty directory) removes
   * the temp file and leaves the target alone. */
  const char *dir = tmp_path("isdir");
  mkdir(dir, 0755);
  write_bytes(tmp_path("isdir/keep"), "x", 1);
  CHECK(jbx_safetensors_save(dir, 1, names, &one, NULL) == -1, "save over a directory");
  CHECK_ERROR_HAS("isdir (renaming temp file");
  CHECK(count_tmp_files(tmpdir) == 0, "temp file left after failed rename");
  CHECK(exists(tmp_path("isdir/keep")), "directory touched");
  unlink(tmp_path("isdir/keep"));
  rmdir(dir);

  jbx_release(one);
  jbx_release(two);
}

static void cleanup(void) {
  DIR *d = opendir(tmpdir);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(tmp_path(e->d_name));
  closedir(d);
  rmdir(tmpdir);
}

int main(void) {
  strcpy(tmpdir, "/tmp/jbx_test_st_XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_round_trip();
  test_exact_bytes();
  test_handmade_read();
  test_reference_fixture();
  test_corrupt_files();
  test_save_errors();
  test_atomic();
  cleanup();
  return check_summary();
}
