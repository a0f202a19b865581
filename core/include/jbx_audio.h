/* Audio files in and out (libsndfile) and sample-rate conversion (libsamplerate).
 * Audio in memory is a float32 tensor [channels, frames] with samples in [-1, 1].
 * Errors name the function and the file: "audio.load: cannot open 'x.flac': No such
 * file or directory". */
#ifndef JBX_AUDIO_H
#define JBX_AUDIO_H
#include <stdbool.h>
#include <stdint.h>

#include "jbx_tensor.h"

/* What a file holds, read from its header without decoding the audio. Like POSIX's
 * `struct stat` and stat(), the struct and the function share a name, so the type is
 * spelled `struct jbx_audio_info`. */
struct jbx_audio_info {
  int rate;         /* frames per second */
  int channels;
  int64_t frames;   /* per channel */
  double seconds;   /* frames / rate */
  char format[16];  /* container: "WAV", "FLAC", "OGG", "MP3", "AIFF", ... */
  char subtype[16]; /* encoding: "PCM_16", "PCM_24", "FLOAT", "VORBIS", ... */
};

/* 0 and *out filled, or -1 with a message (missing, not audio, truncated WAV). */
int jbx_audio_info(const char *path, struct jbx_audio_info *out);

/* How to load. A NULL opts means JBX_AUDIO_LOAD_DEFAULTS. offset and frames count
 * frames at the FILE's own rate (so a crop is chosen from jbx_audio_info alone);
 * with a resampling `rate` the result holds about frames * rate / file_rate frames. */
typedef struct jbx_audio_load_opts {
  int rate;       /* 0: keep the file's rate; otherwise resample to it */
  bool mono;      /* average the channels into one */
  int64_t offset; /* first frame to read (>= 0, < file frames) */
  int64_t frames; /* how many to read; -1: to the end (0 is an error: catches a zeroed struct) */
} jbx_audio_load_opts;
#define JBX_AUDIO_LOAD_DEFAULTS ((jbx_audio_load_opts){0, false, 0, -1})

/* A new float32 tensor [channels, frames] (channels 1 when mono), or NULL with a message.
 * Seeks to offset, so a crop of a long file decodes only the crop. A read that ends before
 * the frames the header promised is an error ("truncated: read N of M frames").
 * *rate_out (may be NULL) receives the rate of the result. */
jbx_tensor *jbx_audio_load(const char *path, const jbx_audio_load_opts *opts, int *rate_out);

/* Writes x ([frames] or [channels, frames], float32) at `rate` to path, the format chosen by
 * the extension: .wav is PCM 24-bit, .flac is PCM 16-bit. Samples are clipped to [-1, 1];
 * NaN or infinity is an error. 0 or -1 with a message. */
int jbx_audio_save(const char *path, const jbx_tensor *x, int rate);

/* A new tensor of x ([frames] or [channels, frames]) converted from rate_in to rate_out,
 * with ceil(frames * rate_out / rate_in) frames; not recorded by autograd. NULL on error. */
jbx_tensor *jbx_resample(const jbx_tensor *x, int rate_in, int rate_out);

/* Highest rate accepted anywhere (768 kHz); libsamplerate also limits the ratio to 256. */
#define JBX_AUDIO_MAX_RATE 768000

/* 0 when rate_in -> rate_out can be converted, else -1 with a message starting "fn: ". */
int jbx_resample_check(const char *fn, int rate_in, int rate_out);

#endif
