/* sampler.c - see sampler.h. */
#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "core/kernels.h"

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rng_seed(rng_t *r, uint64_t seed) {
    uint64_t z = seed;
    for (int i = 0; i < 4; i++) {          /* splitmix64 expands the seed */
        z += 0x9E3779B97F4A7C15ull;
        uint64_t x = z;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        r->s[i] = x ^ (x >> 31);
    }
}

uint64_t rng_next(rng_t *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double rng_uniform(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

const char *sampler_check(const sampling_params_t *p) {
    if (!(p->temperature >= 0.0f) || p->temperature > 100.0f) return "temperature must be in [0, 100]";
    if (p->top_k < 0) return "top_k must be >= 0";
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) return "top_p must be in (0, 1]";
    return NULL;
}

/* (prob, id) pairs sorted by descending prob, ties by lower id. */
typedef struct prob_id { float p; int id; } prob_id_t;
static int cmp_desc(const void *a, const void *b) {
    const prob_id_t *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Zero every prob outside the top-k / top-p nucleus, renormalise. As Hugging
 * Face, vLLM and llama.cpp do, top-p applies to the distribution already
 * renormalised over the top-k tokens.
 * Without top-k, only tokens that can be in the nucleus are sorted: a token of
 * probability q < (1 - top_p) total / V cannot be, because the tokens above
 * it then hold more than top_p of the mass (those at or below it hold at most
 * V q). That turns a sort of the whole vocabulary per sampled token (and per
 * draft) into a sort of a few dozen; the kept set and its order are the same. */
static void cut_tail(const sampling_params_t *p, float *probs, int V) {
    prob_id_t *v = malloc(sizeof *v * (size_t)V);
    if (!v) return;   /* no memory: fall back to the uncut distribution */
    bool top_k = p->top_k > 0 && p->top_k < V;
    double total = 0;
    for (int i = 0; i < V; i++) total += probs[i];
    double floor = !top_k && p->top_p < 1.0f ? 0.999 * (1.0 - p->top_p) * total / V : 0.0;
    int n = 0;
    for (int i = 0; i < V; i++)
        if ((double)probs[i] >= floor) v[n++] = (prob_id_t){probs[i], i};
    qsort(v, (size_t)n, sizeof *v, cmp_desc);
    int keep = top_k ? p->top_k : n;
    double sum = 0;
    if (top_k) for (int i = 0; i < keep; i++) sum += v[i].p;
    else sum = total;
    if (p->top_p < 1.0f) {
        double cum = 0, kept = 0;
        for (int i = 0; i < keep; i++) {
            cum += v[i].p;
            kept += v[i].p;
            if (cum >= p->top_p * sum) { keep = i + 1; break; }
        }
        sum = kept;
    }
    for (int i = 0; i < V; i++) probs[i] = 0.0f;
    for (int i = 0; i < keep; i++) probs[v[i].id] = (float)(v[i].p / sum);
    free(v);
}

void sampler_probs(const sampling_params_t *p, const float *logits, int V, float *probs) {
    if (p->temperature == 0.0f) {
        for (int i = 0; i < V; i++) probs[i] = 0.0f;
        probs[argmax(logits, V)] = 1.0f;
        return;
    }
    /* subtract the max before dividing: with a tiny temperature the others go
     * to -inf (probability 0) instead of overflowing to inf - inf = NaN */
    float mx = logits[argmax(logits, V)];
    for (int i = 0; i < V; i++) probs[i] = (logits[i] - mx) / p->temperature;
    softmax_row(probs, V);
    if ((p->top_k > 0 && p->top_k < V) || p->top_p < 1.0f) cut_tail(p, probs, V);
}

int sampler_draw(const float *probs, int V, rng_t *r) {
    double total = 0;
    for (int i = 0; i < V; i++) total += probs[i];
    double u = rng_uniform(r) * total, cum = 0;
    int last = 0;
    for (int i = 0; i < V; i++) {
        if (probs[i] <= 0.0f) continue;
        cum += probs[i];
        last = i;
        if (u < cum) return i;
    }
    return last;   /* rounding at the top end */
}

int sampler_sample(const sampling_params_t *p, const float *logits, int V, rng_t *r, float *probs) {
    if (p->temperature == 0.0f) return argmax(logits, V);
    sampler_probs(p, logits, V, probs);
    return sampler_draw(probs, V, r);
}
