/* exp and tanh for float32 that the compiler vectorises (libm's expf/tanhf are scalar
 * calls; glibc's tanhf costs ~20-40 ns). Cephes' polynomials (public domain): exp within
 * 1 ulp, tanh within 1.4 ulp over the whole float range, NaN and +-inf handled, exp
 * underflowing gradually through the subnormals like expf.
 *
 * Written branch-free on purpose: GCC does not if-convert `x < c ? c : x` feeding
 * arithmetic under the default -ftrapping-math, so selects go through bit masks. */
#ifndef JBX_FAST_MATH_H
#define JBX_FAST_MATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline int32_t jbx_fm_bits(float f) {
  int32_t b;
  memcpy(&b, &f, 4);
  return b;
}
static inline float jbx_fm_float(int32_t b) {
  float f;
  memcpy(&f, &b, 4);
  return f;
}
/* c ? a : b without a branch. */
static inline float jbx_fm_select(int c, float a, float b) {
  int32_t m = -(int32_t)c;
  return jbx_fm_float((m & jbx_fm_bits(a)) | (~m & jbx_fm_bits(b)));
}

static inline float jbx_fast_expf(float x) {
  /* exp(x) = 2^m exp(r), m = round(x / ln 2), |r| <= ln(2)/2. Beyond the clamp the
   * result is 0 or +inf anyway; adding 1.5 * 2^23 rounds to an integer that the
   * float's low bits then hold. */
  const float magic = 12582912.0f;
  float xc = jbx_fm_select(x < -104.0f, -104.0f, x);
  xc = jbx_fm_select(xc > 88.8f, 88.8f, xc);
  float t = xc * 1.44269504088896341f + magic;
  int32_t mi = (int32_t)((uint32_t)jbx_fm_bits(t) - (uint32_t)jbx_fm_bits(magic));
  float m = t - magic;
  float r = xc - m * 0.693359375f; /* ln 2 in two parts: the first product is exact */
  r = r + m * 2.12194440e-4f;
  float y = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
              4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f) * r * r +
            r + 1.0f;
  /* 2^m in two halves so that m in [-150, 128] stays within the exponent range and the
   * product under/overflows exactly as the true value does. NaN passes through y. */
  int32_t m1 = mi >> 1, m2 = mi - m1;
  return y * jbx_fm_float((int32_t)((uint32_t)(m1 + 127) << 23)) *
         jbx_fm_float((int32_t)((uint32_t)(m2 + 127) << 23));
}

static inline float jbx_fast_tanhf(float x) {
  float ax = fabsf(x), z = x * x;
  /* |x| < 0.625: odd polynomial; beyond: 1 - 2 / (exp(2|x|) + 1) with x's sign */
  float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                  1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
  float big = copysignf(1.0f - 2.0f / (jbx_fast_expf(2.0f * ax) + 1.0f), x);
  return jbx_fm_select(ax < 0.625f, small, big);
}

#endif
