/* Resampling (core/resample.c): a sine keeps its frequency, amplitude and phase at the
 * new rate and back, output lengths, and every error. */
#include <math.h>

#include "check.h"
#include "jbx_audio.h"
#include "jbx_error.h"
#include "jbx_tensor.h"
#include "signals.h"

/* Max error against the analytic sine over the interior (edges ring a little). */
static double sine_error(const jbx_tensor *y, double f, double amp, int rate) {
  int64_t n = y->shape[y->ndim - 1], margin = rate / 20;
  const float *q = jbx_f32(y);
  double m = 0;
  for (int64_t i = margin; i < n - margin; i++)
    m = fmax(m, fabs(q[i] - amp * sin(2 * PI * f * i / rate)));
  return m;
}

static void test_resample(void) {
  jbx_tensor *x = sines(1, 22050, 440.0, 0.5, 22050);
  jbx_tensor *y = jbx_resample(x, 22050, 16000);
  CHECK(y && y->ndim == 2 && y->shape[0] == 1 && y->shape[1] == 16000, "22050 -> 16000: %s",
        y ? "wrong shape" : jbx_last_error());
  if (!y) return;
  /* Same frequency and amplitude at the new rate (the phase too: no added delay). */
  CHECK(sine_error(y, 440.0, 0.5, 16000) < 1e-4, "16 kHz error %g",
        sine_error(y, 440.0, 0.5, 16000));
  jbx_tensor *z = jbx_resample(y, 16000, 22050);
  CHECK(z && z->shape[1] == 22050, "16000 -> 22050 shape");
  if (z) CHECK(sine_error(z, 440.0, 0.5, 22050) < 1e-4, "round trip error %g",
               sine_error(z, 440.0, 0.5, 22050));
  jbx_release(z);
  jbx_release(y);

  /* 1-D in, 1-D out; ceil of the rational length; same rate copies. */
  int64_t n = 1001;
  jbx_tensor *v = jbx_full(1, &n, 0.25f);
  y = jbx_resample(v, 44100, 22050);
  CHECK(y && y->ndim == 1 && y->shape[0] == 501, "1-d resample shape");
  jbx_release(y);
  y = jbx_resample(v, 22050, 22050);
  CHECK(y && y->shape[0] == 1001 && y != v && jbx_f32(y)[1000] == 0.25f, "identity resample");
  jbx_release(y);
  jbx_release(v);

  /* Errors. */
  CHECK(jbx_resample(x, 0, 16000) == NULL, "rate 0 accepted");
  CHECK_ERROR_HAS("audio.resample: bad input rate 0");
  CHECK(jbx_resample(x, 22050, -1) == NULL, "negative rate accepted");
  CHECK_ERROR_HAS("audio.resample: bad output rate -1");
  CHECK(jbx_resample(x, 100, 600000) == NULL, "ratio 6000 accepted");
  CHECK_ERROR_HAS("the ratio must lie within 1/256..256");
  int64_t s3[3] = {1, 1, 4};
  jbx_tensor *t3 = jbx_zeros(3, s3);
  CHECK(jbx_resample(t3, 22050, 16000) == NULL, "3-d accepted");
  CHECK_ERROR_HAS("tensor [1, 1, 4]; want float32 [frames] or [channels, frames]");
  jbx_release(t3);
  jbx_release(x);
}

int main(void) {
  test_resample();
  return check_summary();
}
