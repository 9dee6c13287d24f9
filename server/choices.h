/* choices.h - the scheduler requests behind one API response: one per choice
 * (n per prompt, prompts in order; server/api.h), submitted together and
 * released together, with what a stream has delivered of each so far.
 * The n choices of one prompt share its KV rows through the prefix cache
 * (coordinator/model/prefix_cache.h): the first to be prefilled computes the
 * prompt, the others restore it. */
#ifndef SPEX_CHOICES_H
#define SPEX_CHOICES_H

#include <stdbool.h>
#include <stddef.h>

#include "server/api.h"

typedef struct choice {
    sched_req_t *req;
    size_t text_off;      /* text bytes delivered */
    int tok_off;          /* tokens delivered (logprobs) */
    size_t prev_end;      /* text end of the last delivered token */
    int tokens;           /* completion tokens at the last update */
    bool finished;        /* its final chunk was written */
    bool echo_sent;       /* completions with echo: the prompt's chunk was written */
} choice_t;

typedef struct choice_set {
    choice_t *c;
    int n;
} choice_set_t;

/* Submit every choice of rq; all or nothing (on failure the ones submitted
 * are cancelled and released, and err / *param say why). */
sched_status_t choices_submit(scheduler_t *s, const api_request_t *rq, choice_set_t *cs, const char **param,
                              spex_err_t *err);
/* Release (cancelling unfinished ones) and free. Idempotent. */
void choices_release(choice_set_t *cs);
/* Completion tokens at the choices' last updates, summed. */
int choices_tokens(const choice_set_t *cs);

#endif
