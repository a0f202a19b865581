/* Seeded, machine-independent random numbers (xoshiro256** seeded by splitmix64;
 * normals by Box-Muller in double precision), one generator per stream. */
#ifndef JBX_RNG_H
#define JBX_RNG_H
#include <stdint.h>

typedef struct jbx_rng { uint64_t s[4]; } jbx_rng;

void jbx_rng_seed(jbx_rng *r, uint64_t seed);
uint64_t jbx_rng_u64(jbx_rng *r);
double jbx_rng_uniform(jbx_rng *r);          /* [0, 1) with 53 bits */
double jbx_rng_normal(jbx_rng *r);           /* N(0, 1) */
uint64_t jbx_rng_below(jbx_rng *r, uint64_t n); /* uniform integer in [0, n), unbiased */
/* The default stream used when an op is given no generator (seeded with jbx_manual_seed). */
jbx_rng *jbx_default_rng(void);
void jbx_manual_seed(uint64_t seed);

#endif
