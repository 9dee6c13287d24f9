/* choices.c - see choices.h. */
#include "choices.h"

#include <stdlib.h>

sched_status_t choices_submit(scheduler_t *s, const api_request_t *rq, choice_set_t *cs, const char **param,
                              spex_err_t *err) {
    int n = api_n_choices(rq);
    cs->n = 0;
    if (!(cs->c = calloc((size_t)n, sizeof *cs->c))) {
        spex_fail(err, "out of memory");
        return SCHED_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        sched_params_t p;
        api_choice_params(rq, i, &p);
        sched_status_t st = scheduler_submit(s, &p, &cs->c[i].req, param, err);
        if (st != SCHED_OK) {
            choices_release(cs);
            return st;
        }
        cs->n++;
    }
    return SCHED_OK;
}

void choices_release(choice_set_t *cs) {
    for (int i = 0; i < cs->n; i++) sched_req_release(cs->c[i].req);
    free(cs->c);
    cs->c = NULL;
    cs->n = 0;
}

int choices_tokens(const choice_set_t *cs) {
    int t = 0;
    for (int i = 0; i < cs->n; i++) t += cs->c[i].tokens;
    return t;
}
