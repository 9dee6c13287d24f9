/* spec_verify.c - see spec_verify.h. */
#include "spec_verify.h"

#include <stddef.h>

#include "core/kernels.h"

static int verify_greedy(const float *logits, int V, const int32_t *drafts, int k, int32_t *next) {
    for (int i = 0; i < k; i++) {
        int32_t t = argmax(logits + (size_t)i * V, V);
        if (t != drafts[i]) { *next = t; return i; }
    }
    *next = argmax(logits + (size_t)k * V, V);
    return k;
}

/* Residual after rejecting d: normalize(max(0, p - q)) or, for argmax drafts, p without d. */
static int32_t draw_residual(float *p, const float *q, int32_t d, int V, float *r, rng_t *rng) {
    if (!q) {
        p[d] = 0.0f;
        return sampler_draw(p, V, rng);
    }
    double sum = 0;
    for (int v = 0; v < V; v++) sum += (r[v] = p[v] > q[v] ? p[v] - q[v] : 0.0f);
    /* sum > 0 whenever a rejection is possible (p(d) < q(d) forces mass elsewhere) */
    return sampler_draw(sum > 0 ? r : p, V, rng);
}

int spec_verify(const sampling_params_t *sp, const float *logits, int V, const int32_t *drafts, int k,
                const float *q, rng_t *rng, float *p, float *r, int32_t *next) {
    if (sp->temperature == 0.0f) return verify_greedy(logits, V, drafts, k, next);
    for (int i = 0; i < k; i++) {
        int32_t d = drafts[i];
        const float *qi = q ? q + (size_t)i * V : NULL;
        sampler_probs(sp, logits + (size_t)i * V, V, p);
        double u = rng_uniform(rng);
        double qd = qi ? qi[d] : 1.0;
        if (u * qd < p[d]) continue;                 /* accept with probability min(1, p(d)/q(d)) */
        *next = draw_residual(p, qi, d, V, r, rng);
        return i;
    }
    sampler_probs(sp, logits + (size_t)k * V, V, p);
    *next = sampler_draw(p, V, rng);
    return k;
}
