/* Reading and writing audio files through libsndfile. Resampling is in resample.c. */
#include "jbx_audio.h"

#include <errno.h>
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "jbx_error.h"

/* Frames per libsndfile call: big enough to amortise the call, small enough for cache. */
#define CHUNK_FRAMES 8192

typedef struct {
  int code;
  const char *name;
} code_name;

/* Short names in the style of python-soundfile, so people recognise them. */
static const code_name major_names[] = {
    {SF_FORMAT_WAV, "WAV"},     {SF_FORMAT_AIFF, "AIFF"},   {SF_FORMAT_AU, "AU"},
    {SF_FORMAT_RAW, "RAW"},     {SF_FORMAT_PAF, "PAF"},     {SF_FORMAT_SVX, "SVX"},
    {SF_FORMAT_NIST, "NIST"},   {SF_FORMAT_VOC, "VOC"},     {SF_FORMAT_IRCAM, "IRCAM"},
    {SF_FORMAT_W64, "W64"},     {SF_FORMAT_MAT4, "MAT4"},   {SF_FORMAT_MAT5, "MAT5"},
    {SF_FORMAT_PVF, "PVF"},     {SF_FORMAT_XI, "XI"},       {SF_FORMAT_HTK, "HTK"},
    {SF_FORMAT_SDS, "SDS"},     {SF_FORMAT_AVR, "AVR"},     {SF_FORMAT_WAVEX, "WAVEX"},
    {SF_FORMAT_SD2, "SD2"},     {SF_FORMAT_FLAC, "FLAC"},   {SF_FORMAT_CAF, "CAF"},
    {SF_FORMAT_WVE, "WVE"},     {SF_FORMAT_OGG, "OGG"},     {SF_FORMAT_MPC2K, "MPC2K"},
    {SF_FORMAT_RF64, "RF64"},   {SF_FORMAT_MPEG, "MP3"},    {0, NULL}};

static const code_name subtype_names[] = {
    {SF_FORMAT_PCM_S8, "PCM_S8"},       {SF_FORMAT_PCM_16, "PCM_16"},
    {SF_FORMAT_PCM_24, "PCM_24"},       {SF_FORMAT_PCM_32, "PCM_32"},
    {SF_FORMAT_PCM_U8, "PCM_U8"},       {SF_FORMAT_FLOAT, "FLOAT"},
    {SF_FORMAT_DOUBLE, "DOUBLE"},       {SF_FORMAT_ULAW, "ULAW"},
    {SF_FORMAT_ALAW, "ALAW"},           {SF_FORMAT_IMA_ADPCM, "IMA_ADPCM"},
    {SF_FORMAT_MS_ADPCM, "MS_ADPCM"},   {SF_FORMAT_GSM610, "GSM610"},
    {SF_FORMAT_VOX_ADPCM, "VOX_ADPCM"}, {SF_FORMAT_G721_32, "G721_32"},
    {SF_FORMAT_G723_24, "G723_24"},     {SF_FORMAT_G723_40, "G723_40"},
    {SF_FORMAT_DWVW_12, "DWVW_12"},     {SF_FORMAT_DWVW_16, "DWVW_16"},
    {SF_FORMAT_DWVW_24, "DWVW_24"},     {SF_FORMAT_DWVW_N, "DWVW_N"},
    {SF_FORMAT_DPCM_8, "DPCM_8"},       {SF_FORMAT_DPCM_16, "DPCM_16"},
    {SF_FORMAT_VORBIS, "VORBIS"},       {SF_FORMAT_OPUS, "OPUS"},
    {SF_FORMAT_ALAC_16, "ALAC_16"},     {SF_FORMAT_ALAC_20, "ALAC_20"},
    {SF_FORMAT_ALAC_24, "ALAC_24"},     {SF_FORMAT_ALAC_32, "ALAC_32"},
    {SF_FORMAT_MPEG_LAYER_I, "MPEG_LAYER_I"}, {SF_FORMAT_MPEG_LAYER_II, "MPEG_LAYER_II"},
    {SF_FORMAT_MPEG_LAYER_III, "MPEG_LAYER_III"}, {0, NULL}};

static void name_of(const code_name *table, int code, char *out, size_t size) {
  for (const code_name *e = table; e->name; e++)
    if (e->code == code) {
      snprintf(out, size, "%s", e->name);
      return;
    }
  snprintf(out, size, "0x%04x", code);
}

static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* libsndfile's message for sf (NULL: the last failed open) without its "Error : " or
 * "System error : " prefix and final period, to sit inside our own sentence. */
static const char *sf_msg(SNDFILE *sf, char *buf, size_t size) {
  const char *m = sf_strerror(sf);
  const char *prefixes[] = {"System error : ", "Error : "};
  for (int i = 0; i < 2; i++)
    if (!strncmp(m, prefixes[i], strlen(prefixes[i]))) m += strlen(prefixes[i]);
  snprintf(buf, size, "%s", m);
  size_t n = strlen(buf);
  if (n && buf[n - 1] == '.') buf[n - 1] = '\0';
  return buf;
}

/* libsndfile quietly shortens a WAV whose data chunk runs past the end of the file (it
 * only logs it), so a file cut in half would load as a shorter song. We read the data
 * chunk's declared size ourselves. Returns the frames the header promises, or -1 when it
 * does not say (not RIFF, streamed writers' 0 / 0xFFFFFFFF sizes, unreadable). */
static int64_t wav_declared_frames(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  unsigned char h[12];
  int64_t frames = -1;
  unsigned block_align = 0;
  if (fread(h, 1, 12, f) == 12 && !memcmp(h, "RIFF", 4) && !memcmp(h + 8, "WAVE", 4)) {
    /* Walk the chunks; a sane file has fmt and data within its first few. */
    for (int guard = 0; guard < 64 && fread(h, 1, 8, f) == 8; guard++) {
      uint32_t size = le32(h + 4);
      if (!memcmp(h, "fmt ", 4)) {
        unsigned char fmt[16];
        if (size < 16 || fread(fmt, 1, 16, f) != 16) break;
        block_align = (unsigned)fmt[12] | (unsigned)fmt[13] << 8;
        if (fseek(f, (long)(size - 16 + (size & 1)), SEEK_CUR)) break;
      } else if (!memcmp(h, "data", 4)) {
        if (block_align && size != 0 && size != 0xFFFFFFFFu) frames = size / block_align;
        break;
      } else if (fseek(f, (long)size + (long)(size & 1), SEEK_CUR)) {
        break;
      }
    }
  }
  fclose(f);
  return frames;
}

/* Opens path for reading with a message naming fn and the file on failure. */
static SNDFILE *open_read(const char *fn, const char *path, SF_INFO *info) {
  struct stat st;
  if (!path) {
    jbx_fail("%s: no path given", fn);
    return NULL;
  }
  /* stat first: libsndfile's "System error : ..." is less plain than strerror. */
  if (stat(path, &st) != 0) {
    jbx_fail("%s: cannot open '%s': %s", fn, path, strerror(errno));
    return NULL;
  }
  if (S_ISDIR(st.st_mode)) {
    jbx_fail("%s: cannot open '%s': Is a directory", fn, path);
    return NULL;
  }
  if (st.st_size == 0) {
    jbx_fail("%s: cannot open '%s': the file is empty", fn, path);
    return NULL;
  }
  memset(info, 0, sizeof *info);
  SNDFILE *sf = sf_open(path, SFM_READ, info);
  if (!sf) {
    char m[200];
    int code = sf_error(NULL);
    if (code == SF_ERR_UNRECOGNISED_FORMAT || code == SF_ERR_MALFORMED_FILE ||
        code == SF_ERR_UNSUPPORTED_ENCODING)
      jbx_fail("%s: cannot open '%s': not an audio file that libsndfile can read (%s)", fn,
               path, sf_msg(NULL, m, sizeof m));
    else
      jbx_fail("%s: cannot open '%s': %s", fn, path, sf_msg(NULL, m, sizeof m));
    return NULL;
  }
  if (info->channels <= 0 || info->samplerate <= 0) {
    jbx_fail("%s: '%s' has a bad header (%d channels, %d Hz)", fn, path, info->channels,
             info->samplerate);
    sf_close(sf);
    return NULL;
  }
  if (info->frames == SF_COUNT_MAX || info->frames < 0) {
    jbx_fail("%s: '%s' does not say how long it is (a stream?); convert it to WAV or FLAC",
             fn, path);
    sf_close(sf);
    return NULL;
  }
  if ((info->format & SF_FORMAT_TYPEMASK) == SF_FORMAT_WAV) {
    int64_t declared = wav_declared_frames(path);
    if (declared > (int64_t)info->frames) {
      jbx_fail("%s: '%s' is truncated: read %lld of %lld frames (the data chunk runs past "
               "the end of the file)",
               fn, path, (long long)info->frames, (long long)declared);
      sf_close(sf);
      return NULL;
    }
  }
  return sf;
}

static void fill_info(const SF_INFO *sfi, struct jbx_audio_info *out) {
  memset(out, 0, sizeof *out);
  out->rate = sfi->samplerate;
  out->channels = sfi->channels;
  out->frames = (int64_t)sfi->frames;
  out->seconds = (double)sfi->frames / sfi->samplerate;
  name_of(major_names, sfi->format & SF_FORMAT_TYPEMASK, out->format, sizeof out->format);
  name_of(subtype_names, sfi->format & SF_FORMAT_SUBMASK, out->subtype, sizeof out->subtype);
}

int jbx_audio_info(const char *path, struct jbx_audio_info *out) {
  SF_INFO sfi;
  SNDFILE *sf = open_read("audio.info", path, &sfi);
  if (!sf) return -1;
  fill_info(&sfi, out);
  sf_close(sf);
  return 0;
}

/* Checks opts against a file of `total` frames; sets *want to the frames to read. */
static int check_load_opts(const char *path, const jbx_audio_load_opts *o, int file_rate,
                           int64_t total, int64_t *want) {
  if (o->rate < 0 || o->rate > JBX_AUDIO_MAX_RATE)
    return jbx_fail("audio.load: bad rate %d for '%s' (want 0 to keep the file's rate, or "
                    "1..%d)",
                    o->rate, path, JBX_AUDIO_MAX_RATE);
  if (o->rate && jbx_resample_check("audio.load", file_rate, o->rate) != 0) return -1;
  if (o->offset < 0)
    return jbx_fail("audio.load: offset %lld of '%s' is negative", (long long)o->offset, path);
  if (o->frames == 0 || o->frames < -1)
    return jbx_fail("audio.load: frames %lld for '%s' must be > 0, or -1 for the rest of the "
                    "file",
                    (long long)o->frames, path);
  if (o->offset >= total)
    return jbx_fail("audio.load: offset %lld is beyond the end of '%s' (%lld frames)",
                    (long long)o->offset, path, (long long)total);
  *want = o->frames < 0 ? total - o->offset : o->frames;
  if (*want > total - o->offset) /* not offset + want: that may overflow */
    return jbx_fail("audio.load: offset %lld + frames %lld runs past the end of '%s' (%lld "
                    "frames)",
                    (long long)o->offset, (long long)*want, path, (long long)total);
  return 0;
}

/* Reads `want` frames into out [C, want] (C = 1 averages the file's channels). */
static int read_frames(SNDFILE *sf, const char *path, int channels, int64_t offset,
                       int64_t want, jbx_tensor *out) {
  int out_ch = (int)out->shape[0];
  float *dst = jbx_f32(out);
  float *buf = malloc((size_t)CHUNK_FRAMES * (size_t)channels * sizeof *buf);
  if (!buf) return jbx_fail("audio.load: out of memory reading '%s'", path);
  int64_t got = 0;
  while (got < want) {
    sf_count_t n = want - got < CHUNK_FRAMES ? (sf_count_t)(want - got) : CHUNK_FRAMES;
    sf_count_t r = sf_readf_float(sf, buf, n);
    if (r <= 0) break;
    if (out_ch == channels) {
      for (int c = 0; c < channels; c++) {
        float *d = dst + (int64_t)c * want + got;
        for (sf_count_t i = 0; i < r; i++) d[i] = buf[i * channels + c];
      }
    } else { /* mono: average, as Jukebox does */
      float scale = 1.0f / (float)channels, *d = dst + got;
      for (sf_count_t i = 0; i < r; i++) {
        float s = 0;
        for (int c = 0; c < channels; c++) s += buf[i * channels + c];
        d[i] = s * scale;
      }
    }
    got += r;
  }
  free(buf);
  if (got < want) {
    char cause[240] = "", m[200];
    if (sf_error(sf)) snprintf(cause, sizeof cause, " (libsndfile: %s)", sf_msg(sf, m, sizeof m));
    if (offset)
      return jbx_fail("audio.load: '%s' is truncated: read %lld of %lld frames from frame "
                      "%lld%s",
                      path, (long long)got, (long long)want, (long long)offset, cause);
    return jbx_fail("audio.load: '%s' is truncated: read %lld of %lld frames%s", path,
                    (long long)got, (long long)want, cause);
  }
  return 0;
}

jbx_tensor *jbx_audio_load(const char *path, const jbx_audio_load_opts *opts, int *rate_out) {
  jbx_audio_load_opts o = opts ? *opts : JBX_AUDIO_LOAD_DEFAULTS;
  SF_INFO sfi;
  SNDFILE *sf = open_read("audio.load", path, &sfi);
  if (!sf) return NULL;
  int64_t want = 0;
  if (check_load_opts(path, &o, sfi.samplerate, (int64_t)sfi.frames, &want) != 0) {
    sf_close(sf);
    return NULL;
  }
  /* sf_seek lets FLAC/Ogg jump near the crop instead of decoding from the start. */
  if (o.offset > 0 && sf_seek(sf, (sf_count_t)o.offset, SEEK_SET) != (sf_count_t)o.offset) {
    char m[200];
    jbx_fail("audio.load: cannot seek to frame %lld of '%s': truncated or corrupt? "
             "(libsndfile: %s)",
             (long long)o.offset, path, sf_msg(sf, m, sizeof m));
    sf_close(sf);
    return NULL;
  }
  int64_t shape[2] = {o.mono ? 1 : sfi.channels, want};
  jbx_tensor *t = jbx_empty(JBX_F32, 2, shape);
  if (!t || read_frames(sf, path, sfi.channels, o.offset, want, t) != 0) {
    jbx_release(t);
    sf_close(sf);
    return NULL;
  }
  sf_close(sf);
  int rate = sfi.samplerate;
  if (o.rate && o.rate != rate) {
    jbx_tensor *r = jbx_resample(t, rate, o.rate);
    jbx_release(t);
    if (!r) return NULL;
    t = r;
    rate = o.rate;
  }
  if (rate_out) *rate_out = rate;
  return t;
}

/* ---- saving ---- */

/* The format for path's extension, or 0 with a message. */
static int save_format(const char *path, int *max_channels) {
  const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
  if (!dot || (slash && dot < slash)) {
    jbx_fail("audio.save: '%s' has no extension (use .wav or .flac)", path);
    return 0;
  }
  /* WAV at 24 bits keeps a model's output well below audible quantisation noise; FLAC at
   * 16 bits is the size-friendly format for sharing (and what our data clips use). */
  if (!strcasecmp(dot, ".wav")) {
    *max_channels = 64;
    return SF_FORMAT_WAV | SF_FORMAT_PCM_24;
  }
  if (!strcasecmp(dot, ".flac")) {
    *max_channels = 8; /* FLAC's own limit */
    return SF_FORMAT_FLAC | SF_FORMAT_PCM_16;
  }
  jbx_fail("audio.save: unsupported extension '%s' of '%s' (use .wav or .flac)", dot, path);
  return 0;
}

/* Element (c, i) of a [C, n] or [n] tensor, through its strides. */
static inline float at(const float *base, const jbx_tensor *x, int c, int64_t i) {
  return x->ndim == 1 ? base[i * x->strides[0]]
                      : base[c * x->strides[0] + i * x->strides[1]];
}

int jbx_audio_save(const char *path, const jbx_tensor *x, int rate) {
  if (!path) return jbx_fail("audio.save: no path given");
  int max_channels = 0, format = save_format(path, &max_channels);
  if (!format) return -1;
  if (!x) return jbx_fail("audio.save: no tensor given for '%s'", path);
  char s[160];
  if (x->dtype != JBX_F32)
    return jbx_fail("audio.save: tensor %s for '%s' is int32; want float32 samples",
                    jbx_shape_str(x, s, sizeof s), path);
  if (x->ndim != 1 && x->ndim != 2)
    return jbx_fail("audio.save: tensor %s for '%s' has %d dims; want [frames] or "
                    "[channels, frames]",
                    jbx_shape_str(x, s, sizeof s), path, x->ndim);
  int64_t channels = x->ndim == 2 ? x->shape[0] : 1, n = x->shape[x->ndim - 1];
  if (channels < 1 || channels > max_channels)
    return jbx_fail("audio.save: tensor %s for '%s' has %lld channels, at most %d allowed "
                    "(want [channels, frames]; transpose a [frames, channels] tensor first)",
                    jbx_shape_str(x, s, sizeof s), path, (long long)channels, max_channels);
  if (rate < 1 || rate > JBX_AUDIO_MAX_RATE)
    return jbx_fail("audio.save: bad rate %d for '%s' (want 1..%d)", rate, path,
                    JBX_AUDIO_MAX_RATE);
  const float *base = jbx_f32(x);
  /* NaN would be written as an arbitrary sample: refuse, and say where it is. */
  for (int c = 0; c < channels; c++)
    for (int64_t i = 0; i < n; i++)
      if (!isfinite(at(base, x, c, i)))
        return jbx_fail("audio.save: tensor has %s at channel %d, frame %lld; not writing "
                        "'%s'",
                        isnan(at(base, x, c, i)) ? "NaN" : "infinity", c, (long long)i, path);

  SF_INFO sfi = {0};
  sfi.samplerate = rate;
  sfi.channels = (int)channels;
  sfi.format = format;
  SNDFILE *sf = sf_open(path, SFM_WRITE, &sfi);
  if (!sf) {
    char m[200];
    return jbx_fail("audio.save: cannot open '%s' for writing: %s", path,
                    sf_msg(NULL, m, sizeof m));
  }
  /* We clip to [-1, 1] below (a model's output may overshoot a little); clipping in
   * libsndfile as well guards the float-to-integer conversion against wrap-around. */
  sf_command(sf, SFC_SET_CLIPPING, NULL, SF_TRUE);
  float *buf = malloc((size_t)CHUNK_FRAMES * (size_t)channels * sizeof *buf);
  if (!buf) {
    sf_close(sf);
    remove(path);
    return jbx_fail("audio.save: out of memory writing '%s'", path);
  }
  int rc = 0;
  char msg[200];
  for (int64_t done = 0; done < n && rc == 0;) {
    int64_t m = n - done < CHUNK_FRAMES ? n - done : CHUNK_FRAMES;
    for (int64_t i = 0; i < m; i++)
      for (int c = 0; c < channels; c++) {
        float v = at(base, x, c, done + i);
        buf[i * channels + c] = v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
      }
    if (sf_writef_float(sf, buf, (sf_count_t)m) != (sf_count_t)m)
      rc = jbx_fail("audio.save: writing '%s' failed: %s", path, sf_msg(sf, msg, sizeof msg));
    done += m;
  }
  free(buf);
  if (sf_close(sf) != 0 && rc == 0) rc = jbx_fail("audio.save: closing '%s' failed", path);
  if (rc != 0) remove(path); /* leave no half-written file behind */
  return rc;
}
