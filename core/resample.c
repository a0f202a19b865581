/* Sample-rate conversion with libsamplerate (Secret Rabbit Code), Debian's libsamplerate0.
 *
 * Converter: SRC_SINC_MEDIUM_QUALITY. Its 121 dB SNR is far below the noise floor of the
 * 16-bit audio we read (about 96 dB), and it passes 90% of the band; BEST_QUALITY (144 dB,
 * 97%) measured about 4x slower here (0.4 s vs 0.1 s for a 15 s clip 44.1 -> 22.05 kHz),
 * which a data loader resampling every crop would feel. */
#include <math.h>
#include <samplerate.h>
#include <stdlib.h>
#include <string.h>

#include "jbx_audio.h"
#include "jbx_error.h"

#define JBX_SRC_CONVERTER SRC_SINC_MEDIUM_QUALITY

int jbx_resample_check(const char *fn, int rate_in, int rate_out) {
  if (rate_in < 1 || rate_in > JBX_AUDIO_MAX_RATE)
    return jbx_fail("%s: bad input rate %d (want 1..%d)", fn, rate_in, JBX_AUDIO_MAX_RATE);
  if (rate_out < 1 || rate_out > JBX_AUDIO_MAX_RATE)
    return jbx_fail("%s: bad output rate %d (want 1..%d)", fn, rate_out, JBX_AUDIO_MAX_RATE);
  double ratio = (double)rate_out / rate_in;
  if (!src_is_valid_ratio(ratio))
    return jbx_fail("%s: cannot resample %d Hz to %d Hz: the ratio must lie within 1/256..256",
                    fn, rate_in, rate_out);
  return 0;
}

jbx_tensor *jbx_resample(const jbx_tensor *x, int rate_in, int rate_out) {
  char s[160];
  if (!x) {
    jbx_fail("audio.resample: no tensor given");
    return NULL;
  }
  if (x->dtype != JBX_F32 || (x->ndim != 1 && x->ndim != 2)) {
    jbx_fail("audio.resample: tensor %s%s; want float32 [frames] or [channels, frames]",
             jbx_shape_str(x, s, sizeof s), x->dtype != JBX_F32 ? " is int32" : "");
    return NULL;
  }
  if (jbx_resample_check("audio.resample", rate_in, rate_out) != 0) return NULL;
  int64_t channels = x->ndim == 2 ? x->shape[0] : 1, n = x->shape[x->ndim - 1];
  /* ceil(n * rate_out / rate_in) in integers, as librosa/torchaudio size their output. */
  int64_t n_out = (n * rate_out + rate_in - 1) / rate_in;
  int64_t shape[2] = {channels, n_out};
  jbx_tensor *out = jbx_empty(JBX_F32, x->ndim, x->ndim == 2 ? shape : shape + 1);
  if (!out) return NULL;
  int64_t cstride = x->ndim == 2 ? x->strides[0] : 0, fstride = x->strides[x->ndim - 1];
  const float *base = jbx_f32(x);
  float *dst = jbx_f32(out), *tmp = NULL;
  if (fstride != 1 && n > 0 && !(tmp = malloc((size_t)n * sizeof *tmp))) {
    jbx_release(out);
    jbx_fail("audio.resample: out of memory");
    return NULL;
  }
  for (int64_t c = 0; c < channels; c++) {
    const float *in = base + c * cstride;
    float *o = dst + c * n_out;
    if (tmp) { /* libsamplerate wants contiguous frames */
      for (int64_t i = 0; i < n; i++) tmp[i] = in[i * fstride];
      in = tmp;
    }
    if (rate_in == rate_out || n == 0) {
      memcpy(o, in, (size_t)n_out * sizeof *o);
      continue;
    }
    SRC_DATA d = {0};
    d.data_in = in;
    d.data_out = o;
    d.input_frames = (long)n;
    d.output_frames = (long)n_out;
    d.src_ratio = (double)rate_out / rate_in;
    d.end_of_input = 1;
    int err = src_simple(&d, JBX_SRC_CONVERTER, 1);
    if (err) {
      jbx_fail("audio.resample: libsamplerate failed: %s", src_strerror(err));
      free(tmp);
      jbx_release(out);
      return NULL;
    }
    /* The converter may stop a frame short of the rounded-up length: pad with silence. */
    for (int64_t i = d.output_frames_gen; i < n_out; i++) o[i] = 0.0f;
  }
  free(tmp);
  return out;
}
