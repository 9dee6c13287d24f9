/* token_logprobs.c - see token_logprobs.h. */
#include "token_logprobs.h"

#include <math.h>

#include "core/kernels.h"

/* lp[V] = the log probabilities described in token_logprobs.h. */
static void log_dist(const sampling_params_t *sp, const float *logits, int V, float *lp) {
    if (sp->temperature > 0.0f) {
        sampler_probs(sp, logits, V, lp);
        for (int i = 0; i < V; i++) lp[i] = lp[i] > 0.0f ? fmaxf(logf(lp[i]), LOGPROB_FLOOR) : LOGPROB_FLOOR;
        return;
    }
    float mx = logits[argmax(logits, V)];
    double z = 0;
    for (int i = 0; i < V; i++) z += exp((double)logits[i] - mx);
    double logz = log(z);
    for (int i = 0; i < V; i++) lp[i] = fmaxf((float)((double)logits[i] - mx - logz), LOGPROB_FLOOR);
}

/* Insert (id, v) into the descending list of at most cap entries. */
static void top_insert(token_logprob_t *o, int cap, int32_t id, float v) {
    int n = o->n_top;
    if (n == cap && !(v > o->top_logprob[n - 1])) return;   /* ids come in increasing order: ties keep the lower */
    int at = n < cap ? n : n - 1;
    while (at > 0 && v > o->top_logprob[at - 1]) {
        o->top_logprob[at] = o->top_logprob[at - 1];
        o->top_id[at] = o->top_id[at - 1];
        at--;
    }
    o->top_logprob[at] = v;
    o->top_id[at] = id;
    if (n < cap) o->n_top = n + 1;
}

void token_logprob_fill(const sampling_params_t *sp, const float *logits, int V, int32_t tok, int n_top,
                        float *scratch, token_logprob_t *out) {
    if (n_top > SPEX_MAX_TOP_LOGPROBS) n_top = SPEX_MAX_TOP_LOGPROBS;
    if (n_top > V) n_top = V;
    log_dist(sp, logits, V, scratch);
    out->logprob = scratch[tok];
    out->n_top = 0;
    for (int i = 0; i < V && n_top > 0; i++) top_insert(out, n_top, i, scratch[i]);
}
