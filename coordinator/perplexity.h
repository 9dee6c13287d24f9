/* perplexity.h - how well the model predicts a token stream.
 *
 * Definition (shared with tools/train/eval.py, so the two can be compared):
 * the stream is split into windows of at most ctx tokens that overlap by one:
 * window w covers tokens [w*(ctx-1), w*(ctx-1) + ctx). Each window is scored
 * independently from an empty KV cache, and every token but the very first is
 * predicted exactly once, from the tokens before it in its window.
 *   nll = - sum log p(token | window prefix)      (natural log, float64 sum)
 *   perplexity = exp(nll / predicted),  bits per byte = nll / ln 2 / text bytes */
#ifndef SPEX_PERPLEXITY_H
#define SPEX_PERPLEXITY_H

#include <stdint.h>
#include "coordinator/model.h"

typedef struct ppl_result {
    double nll;          /* total, nats */
    long predicted;      /* tokens predicted */
    double seconds;
} ppl_result_t;

/* Called after each window with (tokens done, total). */
typedef void (*ppl_progress_fn)(void *user, long done, long total);

int perplexity_run(model_t *m, const int32_t *tokens, long n, int ctx, ppl_progress_fn progress, void *user,
                   ppl_result_t *out, spex_err_t *err);

#endif
