/* logit_adjust.h - OpenAI's logit_bias, presence_penalty and frequency_penalty
 * applied to one row of logits before sampling.
 *
 * As OpenAI documents it (and vLLM applies it), for every token j:
 *   logit[j] += bias[j]
 *   logit[j] -= c[j] * frequency_penalty + (c[j] > 0) * presence_penalty
 * where c[j] counts j among the tokens generated so far (not the prompt).
 * With speculative decoding the history of draft position i is the output so
 * far plus drafts 1..i-1, so the drafter and the verifier adjust the same way
 * and verification stays exact. */
#ifndef SPEX_LOGIT_ADJUST_H
#define SPEX_LOGIT_ADJUST_H

#include <stdbool.h>
#include <stdint.h>

#define LOGIT_BIAS_MAX 1024   /* entries of one request's logit_bias */

typedef struct logit_bias_entry {
    int32_t id;
    float bias;               /* [-100, 100] */
} logit_bias_entry_t;

typedef struct logit_adjust {
    float presence, frequency;          /* [-2, 2]; 0 = off */
    const logit_bias_entry_t *bias;     /* [n_bias], not owned; an id may appear once */
    int n_bias;
} logit_adjust_t;

/* Anything to do at all. */
bool logit_adjust_active(const logit_adjust_t *a);
/* Penalties need the per-sequence counts scratch. */
bool logit_adjust_has_penalty(const logit_adjust_t *a);
/* NULL if valid for a vocabulary of V, else a message naming the field, and
 * *field (if not NULL) that field's API name. */
const char *logit_adjust_check(const logit_adjust_t *a, int V, const char **field);

/* Adjust logits[V] in place. The history is hist[0..n_hist) followed by
 * ext[0..n_ext) (generated tokens, then drafts). counts: V int32 of scratch,
 * all zero on entry and left all zero (may be NULL when there is no penalty). */
void logit_adjust_apply(const logit_adjust_t *a, const int32_t *hist, int n_hist, const int32_t *ext, int n_ext,
                        int32_t *counts, float *logits);

#endif
