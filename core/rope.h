/* rope.h - rotary position embedding as DeepSeek-V3 applies it, with YaRN.
 *
 * DeepSeek rotates INTERLEAVED pairs (x[2i], x[2i+1]) by angle pos * freq[i]
 * (its reference code views the rope dims as complex numbers). With YaRN
 * (rope_scaling.type = "yarn") the frequencies are blended between the
 * original and the `factor`-stretched ones over the correction range given by
 * beta_fast / beta_slow, and cos/sin are scaled by
 * mscale(factor, mscale) / mscale(factor, mscale_all_dim) (1 for DeepSeek-V3).
 * The attention softmax scale gets mscale(factor, mscale_all_dim)^2: see
 * rope_softmax_mscale(). The table is precomputed for every position. */
#ifndef SPEX_ROPE_H
#define SPEX_ROPE_H

#include "core/config.h"

typedef struct rope {
    int dim;          /* qk_rope_head_dim (even) */
    int max_pos;
    float *cos, *sin; /* [max_pos, dim/2] */
} rope_t;

int rope_init(rope_t *r, const spex_config_t *cfg, int max_pos, spex_err_t *err);
void rope_free(rope_t *r);

/* Rotate x[dim] in place for position pos. */
void rope_apply(const rope_t *r, float *x, int pos);

/* Multiplier of 1/sqrt(head_dim) in the attention softmax (YaRN; 1 without). */
double rope_softmax_mscale(const spex_config_t *cfg);

#endif
