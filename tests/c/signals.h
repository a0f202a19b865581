/* Test signals shared by the audio tests. */
#ifndef JBX_TEST_SIGNALS_H
#define JBX_TEST_SIGNALS_H
#include <math.h>

#include "jbx_tensor.h"

#define PI 3.14159265358979323846

/* [channels, n] sines: channel c has frequency f * (c + 1) and amplitude amp / (c + 1). */
static inline jbx_tensor *sines(int channels, int64_t n, double f, double amp, int rate) {
  int64_t shape[2] = {channels, n};
  jbx_tensor *t = jbx_empty(JBX_F32, 2, shape);
  float *p = jbx_f32(t);
  for (int c = 0; c < channels; c++)
    for (int64_t i = 0; i < n; i++)
      p[c * n + i] = (float)(amp / (c + 1) * sin(2 * PI * f * (c + 1) * i / rate));
  return t;
}

#endif
