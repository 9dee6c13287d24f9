/* token_logprobs.h - the log probability of a sampled token and the most
 * likely alternatives, for the API's `logprobs` / `top_logprobs`.
 *
 * Which distribution: the one the token was actually drawn from, after
 * logit_bias and the penalties (coordinator/decode/logit_adjust.h):
 *   temperature > 0: softmax(logits / T) cut to top-k / top-p and
 *     renormalised (sampler_probs); tokens outside the nucleus have
 *     probability 0, reported as LOGPROB_FLOOR (OpenAI's -9999);
 *   temperature 0 (greedy): the token is the argmax, and the one-hot
 *     distribution says nothing, so log_softmax(logits) (temperature 1, no
 *     top-k / top-p) is reported: the distribution whose argmax was taken.
 * Alternatives are ordered by log probability, ties by lower token id. */
#ifndef SPEX_TOKEN_LOGPROBS_H
#define SPEX_TOKEN_LOGPROBS_H

#include <stdint.h>

#include "coordinator/decode/sampler.h"

#define SPEX_MAX_TOP_LOGPROBS 20
#define LOGPROB_FLOOR (-9999.0f)

typedef struct token_logprob {
    float logprob;                              /* of the sampled token */
    int n_top;                                  /* alternatives below */
    int32_t top_id[SPEX_MAX_TOP_LOGPROBS];
    float top_logprob[SPEX_MAX_TOP_LOGPROBS];
} token_logprob_t;

/* Fill *out for token `tok` drawn with sp from (adjusted) logits[V], with the
 * n_top (<= SPEX_MAX_TOP_LOGPROBS) most likely alternatives. scratch: V floats. */
void token_logprob_fill(const sampling_params_t *sp, const float *logits, int V, int32_t tok, int n_top,
                        float *scratch, token_logprob_t *out);

#endif
