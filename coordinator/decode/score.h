/* score.h - logits at every position of a token sequence: what `spex logits`
 * prints and `spex perplexity` sums over.
 *
 * Prefill runs the whole sequence in one forward; decode feeds it one token at
 * a time through the KV cache (the two must agree: that is the cache's test).
 * With MTP, row t of mtp_logits predicts token t+2: the MTP module sees the main
 * model's hidden state at t and the token at t+1 (for the last row, the main
 * model's own argmax prediction main_next). */
#ifndef SPEX_SCORE_H
#define SPEX_SCORE_H

#include <stdbool.h>
#include <stdint.h>
#include "coordinator/model/model.h"

typedef struct score_result {
    int n, vocab;
    float *logits;       /* [n, vocab] */
    float *mtp_logits;   /* [n, vocab] or NULL */
    int32_t main_next;   /* argmax of the last row of logits */
} score_result_t;

int score_sequence(model_t *m, const int32_t *tokens, int n, bool decode, bool mtp, score_result_t *out,
                   spex_err_t *err);
void score_result_free(score_result_t *r);

#endif
