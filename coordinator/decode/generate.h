/* generate.h - generation for one sequence: prefill, then decode (with MTP
 * speculation when spec_k > 0) until EOS or max_new_tokens, through the same
 * engine_step() that serves batches (coordinator/decode/engine.h).
 *
 * Each sequence has its own random stream seeded from the request's seed, so a
 * sampled continuation depends only on (model, prompt, parameters, seed). */
#ifndef SPEX_GENERATE_H
#define SPEX_GENERATE_H

#include <stdbool.h>
#include <stdint.h>
#include "coordinator/decode/engine.h"

typedef struct gen_stats {
    int prompt_tokens, generated_tokens;
    double prefill_seconds, decode_seconds;
    const char *finish_reason;   /* "length", "stop" (EOS) or "cancelled" */
    spec_stats_t spec;
} gen_stats_t;

/* Called for each generated token; return nonzero to stop (finish_reason "cancelled"). */
typedef int (*gen_token_fn)(void *user, int32_t token);

/* Generate up to p->max_new_tokens after prompt[n_prompt]. *out (malloc'ed)
 * receives the generated ids, *n_out their count. */
int generate(model_t *m, const int32_t *prompt, int n_prompt, const seq_params_t *p, gen_token_fn on_token,
             void *user, int32_t **out, int *n_out, gen_stats_t *stats, spex_err_t *err);

#include "core/clock.h"   /* spex_now(), used with the stats above */

#endif
