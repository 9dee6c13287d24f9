/* generate.c - see generate.h. */
#include "generate.h"

#include <stdlib.h>
#include <string.h>

typedef struct gen_cb {
    gen_token_fn fn;
    void *user;
} gen_cb_t;

static int forward_token(void *user, sequence_t *s, int32_t token) {
    (void)s;
    gen_cb_t *c = user;
    return c->fn ? c->fn(c->user, token) : 0;
}

int generate(model_t *m, const int32_t *prompt, int n_prompt, const seq_params_t *p, gen_token_fn on_token,
             void *user, int32_t **out, int *n_out, gen_stats_t *stats, spex_err_t *err) {
    memset(stats, 0, sizeof *stats);
    *out = NULL;
    *n_out = 0;
    sequence_t *s = sequence_create(m, prompt, n_prompt, p, err);
    if (!s) return -1;
    gen_cb_t cb = {on_token, user};
    int rc = 0;
    while (!s->done && rc == 0) rc = engine_step(m, &s, 1, forward_token, &cb, err);
    if (rc == 0) {
        stats->prompt_tokens = n_prompt;
        stats->generated_tokens = s->n_out;
        stats->prefill_seconds = s->prefill_seconds;
        stats->decode_seconds = s->decode_seconds;
        stats->finish_reason = s->finish_reason;
        stats->spec = s->stats;
        *out = s->out;           /* hand the buffer over */
        *n_out = s->n_out;
        s->out = NULL;
    }
    sequence_free(s);
    return rc;
}
