/* perplexity.h - how well the model predicts a token stream.
 *
 * Definition (shared with tools/train/eval.py, so the two can be compared):
 * the stream (BOS + the tokens of the whole text) is split into consecutive
 * non-overlapping windows of ctx tokens, [w*ctx, (w+1)*ctx); a last, shorter
 * window counts if it has at least 2 tokens. Each window is scored on its own
 * from an empty KV cache; logits at window position j score token j+1, so the
 * first token of every window is context only.
 *   nll = - sum log p(token | window prefix)      (natural log, float64 sum)
 *   perplexity = exp(nll / predicted)
 * Bits per byte divide by the bytes of the predicted tokens only (the CLI sums
 * them), so windows' first tokens do not flatter the figure.
 *
 * With MTP (the draft model of speculative decoding), as tools/train/eval.py:
 * MTP row t of a window (main hidden at t, token t+1) scores token t+2, for
 * t + 2 < window length; it agrees when its argmax equals the argmax of main
 * row t+1, the main model's own next-next prediction, which is what a greedy
 * draft must match to be accepted. */
#ifndef SPEX_PERPLEXITY_H
#define SPEX_PERPLEXITY_H

#include <stdbool.h>
#include <stdint.h>
#include "coordinator/model/model.h"

typedef struct ppl_result {
    double nll;          /* total, nats */
    long predicted;      /* tokens predicted */
    double seconds;
    double mtp_nll;      /* with mtp: MTP module 0's total, nats */
    long mtp_predicted;  /* with mtp: tokens it predicted */
    long mtp_agree;      /* with mtp: rows whose argmax equals the main model's next row's */
} ppl_result_t;

/* Called after each window with (tokens done, total). */
typedef void (*ppl_progress_fn)(void *user, long done, long total);

int perplexity_run(model_t *m, const int32_t *tokens, long n, int ctx, bool mtp, ppl_progress_fn progress,
                   void *user, ppl_result_t *out, spex_err_t *err);

#endif
