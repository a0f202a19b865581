/* Audio I/O (core/audio.c): loading a real clip, crops, save/reload round trips, loading
 * at another rate, and every error a user can meet (missing, not audio, truncated, bad
 * extension, bad crop). Resampling itself is in test_resample.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "jbx_audio.h"
#include "jbx_error.h"
#include "jbx_tensor.h"
#include "signals.h"

#define CLIP JBX_SOURCE_DIR "/data/music/wesnoth_battle-epic_00.flac"
#define CLIP_FRAMES 330750 /* 15 s at 22050 Hz */
#define FIX JBX_SOURCE_DIR "/tests/fixtures/audio/"

static char tmp_wav[256], tmp_flac[256], tmp_stereo[256];


static double max_abs_diff(const float *a, const float *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
  return m;
}

static void test_info(void) {
  struct jbx_audio_info info;
  CHECK(jbx_audio_info(CLIP, &info) == 0, "%s", jbx_last_error());
  CHECK(info.rate == 22050, "rate %d", info.rate);
  CHECK(info.channels == 1, "channels %d", info.channels);
  CHECK(info.frames == CLIP_FRAMES, "frames %lld", (long long)info.frames);
  CHECK_CLOSE(info.seconds, 15.0, 1e-9);
  CHECK(!strcmp(info.format, "FLAC"), "format %s", info.format);
  CHECK(!strcmp(info.subtype, "PCM_16"), "subtype %s", info.subtype);
}

static void test_load_full_and_crop(void) {
  int rate = 0;
  jbx_tensor *x = jbx_audio_load(CLIP, NULL, &rate);
  CHECK(x != NULL, "%s", jbx_last_error());
  if (!x) return;
  CHECK(x->ndim == 2 && x->shape[0] == 1 && x->shape[1] == CLIP_FRAMES, "shape [%lld, %lld]",
        (long long)x->shape[0], (long long)x->shape[1]);
  CHECK(rate == 22050, "rate %d", rate);
  const float *p = jbx_f32(x);
  int finite = 1;
  double ss = 0, peak = 0;
  for (int64_t i = 0; i < CLIP_FRAMES; i++) {
    finite &= isfinite(p[i]) != 0;
    ss += (double)p[i] * p[i];
    peak = fmax(peak, fabs(p[i]));
  }
  double rms = sqrt(ss / CLIP_FRAMES);
  CHECK(finite, "non-finite samples");
  CHECK(rms > 0.01 && rms < 0.7, "rms %g", rms);
  CHECK(peak <= 1.0 && peak > 0.05, "peak %g", peak);

  /* A crop equals the same slice of the full load, sample for sample. */
  jbx_audio_load_opts o = JBX_AUDIO_LOAD_DEFAULTS;
  o.offset = 100000;
  o.frames = 22050;
  jbx_tensor *c = jbx_audio_load(CLIP, &o, NULL);
  CHECK(c != NULL, "%s", jbx_last_error());
  if (c) {
    CHECK(c->shape[0] == 1 && c->shape[1] == 22050, "crop shape [%lld, %lld]",
          (long long)c->shape[0], (long long)c->shape[1]);
    CHECK(max_abs_diff(jbx_f32(c), p + 100000, 22050) == 0.0, "crop differs from the slice");
  }
  jbx_release(c);

  /* The last frames, with frames = -1 meaning "to the end". */
  o.offset = CLIP_FRAMES - 10;
  o.frames = -1;
  c = jbx_audio_load(CLIP, &o, NULL);
  CHECK(c && c->shape[1] == 10, "tail crop");
  if (c) CHECK(max_abs_diff(jbx_f32(c), p + CLIP_FRAMES - 10, 10) == 0.0, "tail differs");
  jbx_release(c);

  /* Loading with a rate resamples: 15 s at 16 kHz. */
  o = JBX_AUDIO_LOAD_DEFAULTS;
  o.rate = 16000;
  c = jbx_audio_load(CLIP, &o, &rate);
  CHECK(c && c->shape[1] == 240000 && rate == 16000, "resampled load: %s",
        c ? "wrong shape or rate" : jbx_last_error());
  jbx_release(c);
  jbx_release(x);
}

static void test_save_reload(void) {
  const int64_t n = 4410;
  jbx_tensor *x = sines(2, n, 441.0, 0.9, 22050);
  float *p = jbx_f32(x);
  p[7] = 1.5f;  /* beyond full scale: clipped to 1 */
  p[9] = -3.0f; /* clipped to -1 */

  /* FLAC: 16-bit. libsndfile writes x * 32767 and reads back / 32768, so allow 2 steps. */
  CHECK(jbx_audio_save(tmp_flac, x, 22050) == 0, "%s", jbx_last_error());
  struct jbx_audio_info info;
  CHECK(jbx_audio_info(tmp_flac, &info) == 0 && !strcmp(info.format, "FLAC") &&
            !strcmp(info.subtype, "PCM_16") && info.channels == 2 && info.frames == n,
        "flac info %s %s %d %lld", info.format, info.subtype, info.channels,
        (long long)info.frames);
  int rate = 0;
  jbx_tensor *y = jbx_audio_load(tmp_flac, NULL, &rate);
  CHECK(y && y->shape[0] == 2 && y->shape[1] == n && rate == 22050, "flac reload shape");
  if (y) {
    float *q = jbx_f32(y);
    CHECK_CLOSE(q[7], 1.0, 2.0 / 32768);
    CHECK_CLOSE(q[9], -1.0, 2.0 / 32768);
    p[7] = 1.0f;
    p[9] = -1.0f;
    CHECK(max_abs_diff(p, q, 2 * n) <= 2.0 / 32768, "flac error %g",
          max_abs_diff(p, q, 2 * n));
  }
  jbx_release(y);

  /* WAV: 24-bit, so 2 steps of 2^-23. */
  CHECK(jbx_audio_save(tmp_wav, x, 22050) == 0, "%s", jbx_last_error());
  CHECK(jbx_audio_info(tmp_wav, &info) == 0 && !strcmp(info.format, "WAV") &&
            !strcmp(info.subtype, "PCM_24"),
        "wav info %s %s", info.format, info.subtype);
  y = jbx_audio_load(tmp_wav, NULL, NULL);
  CHECK(y && y->shape[0] == 2 && y->shape[1] == n, "wav reload shape");
  if (y) CHECK(max_abs_diff(p, jbx_f32(y), 2 * n) <= 2.0 / 8388608, "wav error %g",
               max_abs_diff(p, jbx_f32(y), 2 * n));
  jbx_release(y);

  /* mono averages the channels. */
  jbx_audio_load_opts o = JBX_AUDIO_LOAD_DEFAULTS;
  o.mono = true;
  y = jbx_audio_load(tmp_wav, &o, NULL);
  CHECK(y && y->shape[0] == 1 && y->shape[1] == n, "mono shape");
  if (y) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
      m = fmax(m, fabs(jbx_f32(y)[i] - 0.5 * (p[i] + p[n + i])));
    CHECK(m <= 2.0 / 8388608, "mono is not the channel average (error %g)", m);
  }
  jbx_release(y);

  /* A strided view ([n, 2] transposed to [2, n]) saves like its contiguous copy. */
  jbx_tensor *xt = jbx_transpose(x, 0, 1);      /* [n, 2] view */
  jbx_tensor *xtc = jbx_contiguous(xt);        /* [n, 2] contiguous */
  jbx_tensor *back = jbx_transpose(xtc, 0, 1); /* [2, n] strided */
  CHECK(back && !jbx_is_contiguous(back), "expected a strided view");
  CHECK(jbx_audio_save(tmp_stereo, back, 22050) == 0, "%s", jbx_last_error());
  y = jbx_audio_load(tmp_stereo, NULL, NULL);
  if (y) CHECK(max_abs_diff(p, jbx_f32(y), 2 * n) <= 2.0 / 8388608, "strided save differs");
  jbx_release(y);
  jbx_release(back);
  jbx_release(xtc);
  jbx_release(xt);

  /* [frames] saves as one channel. */
  int64_t n1 = 1000;
  jbx_tensor *v = jbx_zeros(1, &n1);
  CHECK(jbx_audio_save(tmp_flac, v, 8000) == 0, "%s", jbx_last_error());
  y = jbx_audio_load(tmp_flac, NULL, &rate);
  CHECK(y && y->shape[0] == 1 && y->shape[1] == 1000 && rate == 8000, "1-d save");
  jbx_release(y);
  jbx_release(v);
  jbx_release(x);
}

static void test_load_errors(void) {
  struct jbx_audio_info info;
  jbx_audio_load_opts o = JBX_AUDIO_LOAD_DEFAULTS;

  CHECK(jbx_audio_load(FIX "missing.flac", NULL, NULL) == NULL, "missing file loaded");
  CHECK_ERROR_HAS("audio.load: cannot open '" FIX "missing.flac': No such file or directory");
  CHECK(jbx_audio_info(FIX "missing.flac", &info) == -1, "missing file info");
  CHECK_ERROR_HAS("audio.info: cannot open '" FIX "missing.flac': No such file or directory");
  CHECK(jbx_audio_load(FIX, NULL, NULL) == NULL, "directory loaded");
  CHECK_ERROR_HAS("Is a directory");

  CHECK(jbx_audio_load(FIX "not_audio.wav", NULL, NULL) == NULL, "text file loaded");
  CHECK_ERROR_HAS("audio.load: cannot open '" FIX "not_audio.wav': not an audio file");
  CHECK(jbx_audio_info(FIX "empty.flac", &info) == -1, "empty file info");
  CHECK_ERROR_HAS("audio.info: cannot open '" FIX "empty.flac': the file is empty");

  /* A FLAC cut in half: the header promises 22050 frames; decoding stops early. */
  CHECK(jbx_audio_info(FIX "truncated.flac", &info) == 0 && info.frames == 22050,
        "truncated flac header: %s", jbx_last_error());
  CHECK(jbx_audio_load(FIX "truncated.flac", NULL, NULL) == NULL, "truncated flac loaded");
  CHECK_ERROR_HAS("audio.load: '" FIX "truncated.flac' is truncated: read ");
  CHECK_ERROR_HAS(" of 22050 frames");
  o.offset = 20000;
  o.frames = 1000;
  CHECK(jbx_audio_load(FIX "truncated.flac", &o, NULL) == NULL, "crop past the cut loaded");
  CHECK_ERROR_HAS("audio.load: cannot seek to frame 20000 of '" FIX "truncated.flac': truncated");
  o.offset = 0; /* a crop before the cut is good data */
  jbx_tensor *ok = jbx_audio_load(FIX "truncated.flac", &o, NULL);
  CHECK(ok && ok->shape[1] == 1000, "crop before the cut: %s", jbx_last_error());
  jbx_release(ok);

  /* A WAV cut in half: libsndfile alone would shorten it silently. */
  CHECK(jbx_audio_load(FIX "truncated.wav", NULL, NULL) == NULL, "truncated wav loaded");
  CHECK_ERROR_HAS("audio.load: '" FIX "truncated.wav' is truncated: read 5501 of 11025 frames");
  CHECK(jbx_audio_info(FIX "truncated.wav", &info) == -1, "truncated wav info");
  CHECK_ERROR_HAS("audio.info: '" FIX "truncated.wav' is truncated");

  /* Crops outside the file, and bad options. */
  o = JBX_AUDIO_LOAD_DEFAULTS;
  o.offset = CLIP_FRAMES;
  CHECK(jbx_audio_load(CLIP, &o, NULL) == NULL, "offset at the end loaded");
  CHECK_ERROR_HAS("audio.load: offset 330750 is beyond the end of '" CLIP "' (330750 frames)");
  o.offset = CLIP_FRAMES - 100;
  o.frames = 200;
  CHECK(jbx_audio_load(CLIP, &o, NULL) == NULL, "crop past the end loaded");
  CHECK_ERROR_HAS("offset 330650 + frames 200 runs past the end of '" CLIP "'");
  o.offset = -1;
  o.frames = -1;
  CHECK(jbx_audio_load(CLIP, &o, NULL) == NULL, "negative offset");
  CHECK_ERROR_HAS("audio.load: offset -1 of '" CLIP "' is negative");
  jbx_audio_load_opts zero = {0};
  CHECK(jbx_audio_load(CLIP, &zero, NULL) == NULL, "frames 0 loaded");
  CHECK_ERROR_HAS("audio.load: frames 0 for '" CLIP "' must be > 0, or -1");
  o = JBX_AUDIO_LOAD_DEFAULTS;
  o.rate = -5;
  CHECK(jbx_audio_load(CLIP, &o, NULL) == NULL, "rate -5");
  CHECK_ERROR_HAS("audio.load: bad rate -5 for '" CLIP "'");
  o.rate = 50;
  CHECK(jbx_audio_load(CLIP, &o, NULL) == NULL, "ratio 1/441");
  CHECK_ERROR_HAS("audio.load: cannot resample 22050 Hz to 50 Hz");
}

static void test_save_errors(void) {
  int64_t n = 100;
  jbx_tensor *x = jbx_zeros(1, &n);
  CHECK(jbx_audio_save("/tmp/x.mp4", x, 22050) == -1, "mp4 saved");
  CHECK_ERROR_HAS("audio.save: unsupported extension '.mp4' of '/tmp/x.mp4' (use .wav or .flac)");
  CHECK(jbx_audio_save("/tmp/dir.d/noext", x, 22050) == -1, "no extension saved");
  CHECK_ERROR_HAS("audio.save: '/tmp/dir.d/noext' has no extension (use .wav or .flac)");
  CHECK(jbx_audio_save("/nonexistent-dir/x.wav", x, 22050) == -1, "missing dir saved");
  CHECK_ERROR_HAS("audio.save: cannot open '/nonexistent-dir/x.wav' for writing: No such file");
  CHECK(jbx_audio_save(tmp_wav, x, 0) == -1, "rate 0 saved");
  CHECK_ERROR_HAS("audio.save: bad rate 0 for '");

  jbx_f32(x)[42] = NAN;
  CHECK(jbx_audio_save(tmp_wav, x, 22050) == -1, "NaN saved");
  CHECK_ERROR_HAS("audio.save: tensor has NaN at channel 0, frame 42; not writing '");
  jbx_f32(x)[42] = INFINITY;
  CHECK(jbx_audio_save(tmp_wav, x, 22050) == -1, "inf saved");
  CHECK_ERROR_HAS("infinity at channel 0, frame 42");
  jbx_release(x);

  int64_t s3[3] = {1, 1, 4}, s2[2] = {4410, 2};
  x = jbx_zeros(3, s3);
  CHECK(jbx_audio_save(tmp_wav, x, 22050) == -1, "3-d saved");
  CHECK_ERROR_HAS("tensor [1, 1, 4] for '");
  CHECK_ERROR_HAS("has 3 dims; want [frames] or [channels, frames]");
  jbx_release(x);
  x = jbx_zeros(2, s2);
  CHECK(jbx_audio_save(tmp_flac, x, 22050) == -1, "[frames, channels] saved");
  CHECK_ERROR_HAS("has 4410 channels, at most 8 allowed");
  jbx_release(x);
  int32_t codes[2] = {1, 2};
  int64_t s1 = 2;
  x = jbx_from_ints(1, &s1, codes);
  CHECK(jbx_audio_save(tmp_wav, x, 22050) == -1, "int32 saved");
  CHECK_ERROR_HAS("is int32; want float32 samples");
  jbx_release(x);
}

int main(void) {
  int pid = (int)getpid();
  snprintf(tmp_wav, sizeof tmp_wav, "/tmp/jbx_test_audio_%d.wav", pid);
  snprintf(tmp_flac, sizeof tmp_flac, "/tmp/jbx_test_audio_%d.flac", pid);
  snprintf(tmp_stereo, sizeof tmp_stereo, "/tmp/jbx_test_audio_%d_strided.wav", pid);
  test_info();
  test_load_full_and_crop();
  test_save_reload();
  test_load_errors();
  test_save_errors();
  remove(tmp_wav);
  remove(tmp_flac);
  remove(tmp_stereo);
  return check_summary();
}
