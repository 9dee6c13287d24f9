/* spec_verify.h - accepting or rejecting draft tokens without changing the output distribution.
 *
 * Given the target model's logits at the K+1 verify rows and K drafts:
 *  - greedy (temperature 0): accept while a draft equals the target's argmax;
 *    emit the argmax at the first mismatch, or the bonus argmax after the last;
 *  - temperature > 0, sampled drafts (d_i ~ q_i): accept d_i with probability
 *    min(1, p_i(d_i) / q_i(d_i)); on rejection draw from normalize(max(0, p_i - q_i))
 *    (Leviathan et al. 2023, Chen et al. 2023);
 *  - temperature > 0, argmax drafts (q_i is one-hot at d_i): accept with
 *    probability p_i(d_i); on rejection draw from p_i with d_i removed.
 * p_i is the request's distribution (temperature, top-k, top-p applied): every
 * emitted token is then distributed exactly as plain sampling would give it.
 * logit_bias and penalties are the caller's: the engine adjusts row i's logits
 * (history: the output plus drafts 1..i) before calling, and the drafts' q the
 * same way (coordinator/decode/logit_adjust.h).
 * If every draft is accepted, the bonus token is drawn from p_{K+1}. */
#ifndef SPEX_SPEC_VERIFY_H
#define SPEX_SPEC_VERIFY_H

#include <stdint.h>
#include "coordinator/decode/sampler.h"

/* logits: [k+1, V]; drafts: [k]; q: [k, V] draft distributions, or NULL for
 * argmax drafts. p, r: V floats of scratch. Returns the number of accepted
 * drafts a (0..k); *next = the token emitted after them. */
int spec_verify(const sampling_params_t *sp, const float *logits, int V, const int32_t *drafts, int k,
                const float *q, rng_t *rng, float *p, float *r, int32_t *next);

#endif
