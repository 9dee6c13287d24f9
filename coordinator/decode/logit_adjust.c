/* logit_adjust.c - see logit_adjust.h. The counts are built and cleared by
 * walking the history twice, so one call costs O(history + biased tokens),
 * never O(vocabulary). */
#include "logit_adjust.h"

#include <math.h>
#include <stddef.h>

bool logit_adjust_has_penalty(const logit_adjust_t *a) { return a->presence != 0.0f || a->frequency != 0.0f; }

bool logit_adjust_active(const logit_adjust_t *a) { return logit_adjust_has_penalty(a) || a->n_bias > 0; }

const char *logit_adjust_check(const logit_adjust_t *a, int V, const char **field) {
    const char *dummy;
    if (!field) field = &dummy;
    *field = "presence_penalty";
    if (!(a->presence >= -2.0f && a->presence <= 2.0f)) return "presence_penalty must be in [-2, 2]";
    *field = "frequency_penalty";
    if (!(a->frequency >= -2.0f && a->frequency <= 2.0f)) return "frequency_penalty must be in [-2, 2]";
    *field = "logit_bias";
    if (a->n_bias < 0 || a->n_bias > LOGIT_BIAS_MAX || (a->n_bias > 0 && !a->bias))
        return "logit_bias has too many entries";
    for (int i = 0; i < a->n_bias; i++) {
        if (a->bias[i].id < 0 || a->bias[i].id >= V) return "logit_bias names a token outside the vocabulary";
        if (!(a->bias[i].bias >= -100.0f && a->bias[i].bias <= 100.0f)) return "logit_bias values must be in [-100, 100]";
    }
    *field = NULL;
    return NULL;
}

static void count(int32_t *counts, const int32_t *t, int n) {
    for (int i = 0; i < n; i++) counts[t[i]]++;
}

/* Subtract each counted token's penalty once and zero its count. */
static void penalize(const logit_adjust_t *a, int32_t *counts, const int32_t *t, int n, float *logits) {
    for (int i = 0; i < n; i++) {
        int32_t c = counts[t[i]];
        if (c == 0) continue;   /* already done */
        logits[t[i]] -= (float)c * a->frequency + a->presence;
        counts[t[i]] = 0;
    }
}

void logit_adjust_apply(const logit_adjust_t *a, const int32_t *hist, int n_hist, const int32_t *ext, int n_ext,
                        int32_t *counts, float *logits) {
    for (int i = 0; i < a->n_bias; i++) logits[a->bias[i].id] += a->bias[i].bias;
    if (!logit_adjust_has_penalty(a) || !counts) return;
    count(counts, hist, n_hist);
    count(counts, ext, n_ext);
    penalize(a, counts, hist, n_hist, logits);
    penalize(a, counts, ext, n_ext, logits);
}
