/* sampler.h - turning logits into a next token: greedy, or temperature / top-k /
 * top-p sampling with an explicit, seedable random stream.
 *
 * sampler_probs() gives the exact distribution a token is drawn from (after
 * temperature, top-k and top-p), which speculative decoding needs to verify
 * drafts without changing the output distribution. temperature == 0 means greedy
 * (argmax, lowest id on ties): a one-hot distribution. */
#ifndef SPEX_SAMPLER_H
#define SPEX_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct sampling_params {
    float temperature;   /* 0 = greedy */
    int top_k;           /* 0 = off */
    float top_p;         /* 1 = off */
    uint64_t seed;
} sampling_params_t;

/* xoshiro256** state: one per sequence, so results do not depend on batching. */
typedef struct rng {
    uint64_t s[4];
} rng_t;

void rng_seed(rng_t *r, uint64_t seed);
uint64_t rng_next(rng_t *r);
/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(rng_t *r);

/* Validate parameters; returns NULL if fine, else a message naming the field. */
const char *sampler_check(const sampling_params_t *p);

/* probs[V] = the distribution implied by p over logits[V]. */
void sampler_probs(const sampling_params_t *p, const float *logits, int V, float *probs);

/* Draw an index from probs[V] (need not be normalised; zero entries never drawn). */
int sampler_draw(const float *probs, int V, rng_t *r);

/* Next token from logits (greedy when temperature == 0). probs: V floats of scratch. */
int sampler_sample(const sampling_params_t *p, const float *logits, int V, rng_t *r, float *probs);

#endif
