/* xoshiro256** seeded through splitmix64: the same seed gives the same stream on
 * every machine (only integer arithmetic and IEEE double maths). */
#include "jbx_rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void jbx_rng_seed(jbx_rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

uint64_t jbx_rng_u64(jbx_rng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double jbx_rng_uniform(jbx_rng *r) { return (double)(jbx_rng_u64(r) >> 11) * 0x1.0p-53; }

double jbx_rng_normal(jbx_rng *r) {
  /* Box-Muller with one draw per call: simpler to keep the stream state in s[] only. */
  double u1 = 1.0 - jbx_rng_uniform(r), u2 = jbx_rng_uniform(r);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t jbx_rng_below(jbx_rng *r, uint64_t n) {
  if (n == 0) return 0;
  uint64_t limit = UINT64_MAX - UINT64_MAX % n, x;
  do x = jbx_rng_u64(r);
  while (x >= limit);
  return x % n;
}

static _Thread_local jbx_rng default_rng;
static _Thread_local int default_seeded;

jbx_rng *jbx_default_rng(void) {
  if (!default_seeded) {
    jbx_rng_seed(&default_rng, 0);
    default_seeded = 1;
  }
  return &default_rng;
}

void jbx_manual_seed(uint64_t seed) {
  jbx_rng_seed(&default_rng, seed);
  default_seeded = 1;
}
