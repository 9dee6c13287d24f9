/* router.c - see router.h. Mirrors DeepSeek-V3's Gate.forward row by row. */
#include "router.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"

int router_load(router_t *r, const spex_config_t *cfg, const tensor_store_t *ts, const char *prefix, spex_err_t *err) {
    char n[512];
    memset(r, 0, sizeof *r);
    r->n_experts = cfg->n_routed_experts;
    r->top_k = cfg->num_experts_per_tok;
    r->n_group = cfg->n_group > 0 ? cfg->n_group : 1;
    r->topk_group = cfg->topk_group > 0 ? cfg->topk_group : r->n_group;
    r->scoring = cfg->scoring_func;
    r->method = cfg->topk_method;
    r->norm_topk_prob = cfg->norm_topk_prob;
    r->scale = (float)cfg->routed_scaling_factor;
    if (r->n_experts > 1024 || r->n_group > 256 || r->n_experts % r->n_group)
        return spex_fail(err, "%s.mlp.gate: unsupported routing (%d experts in %d groups; at most 1024 and 256)",
                         prefix, r->n_experts, r->n_group);
    snprintf(n, sizeof n, "%s.mlp.gate.weight", prefix);
    if (linear_load(&r->gate, ts, n, r->n_experts, cfg->hidden_size, err)) return -1;
    if (r->method == TOPK_NOAUX_TC) {
        snprintf(n, sizeof n, "%s.mlp.gate.e_score_correction_bias", prefix);
        if (!(r->bias = vector_load(ts, n, r->n_experts, err))) return -1;
    }
    return 0;
}

void router_free(router_t *r) {
    if (!r) return;
    linear_free(&r->gate);
    free(r->bias);
    r->bias = NULL;
}

/* Largest value among x[0..n) not yet taken; ties -> lowest index. -1 if none finite. */
static int pick_max(const float *x, const unsigned char *taken, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!taken[i] && x[i] != -INFINITY && (best < 0 || x[i] > x[best])) best = i;
    return best;
}

/* Mask (set -inf in b) every expert outside the topk_group best groups. */
static void mask_groups(const router_t *r, float *b) {
    int per = r->n_experts / r->n_group;
    float gscore[256];
    unsigned char keep[256] = {0};
    for (int g = 0; g < r->n_group; g++) {
        const float *s = b + g * per;
        if (r->method == TOPK_NOAUX_TC) {          /* sum of the two best */
            float m1 = -INFINITY, m2 = -INFINITY;
            for (int i = 0; i < per; i++) {
                if (s[i] > m1) { m2 = m1; m1 = s[i]; }
                else if (s[i] > m2) m2 = s[i];
            }
            gscore[g] = per > 1 ? m1 + m2 : m1;
        } else {
            float m = -INFINITY;
            for (int i = 0; i < per; i++) if (s[i] > m) m = s[i];
            gscore[g] = m;
        }
    }
    for (int k = 0; k < r->topk_group; k++) {
        int g = pick_max(gscore, keep, r->n_group);
        if (g >= 0) keep[g] = 1;
    }
    for (int g = 0; g < r->n_group; g++)
        if (!keep[g]) for (int i = 0; i < per; i++) b[g * per + i] = -INFINITY;
}

static int cmp_int32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void select_row(const router_t *r, const float *s, float *b, int32_t *idx, float *w) {
    unsigned char taken[1024] = {0};
    int E = r->n_experts;
    for (int e = 0; e < E; e++) b[e] = s[e] + (r->bias ? r->bias[e] : 0.0f);
    if (r->extra_bias)
        for (int e = 0; e < E; e++) b[e] += r->extra_bias[e];
    if (r->n_group > 1 && r->method != TOPK_GREEDY) mask_groups(r, b);
    for (int k = 0; k < r->top_k; k++) {
        int e = pick_max(b, taken, E);
        if (e < 0) e = k;   /* unreachable with finite scores; keeps idx valid on NaN input */
        taken[e] = 1;
        idx[k] = e;
    }
    qsort(idx, (size_t)r->top_k, sizeof(int32_t), cmp_int32);
    float sum = 0.0f;
    for (int k = 0; k < r->top_k; k++) sum += (w[k] = s[idx[k]]);
    bool norm = r->norm_topk_prob && r->top_k > 1;
    for (int k = 0; k < r->top_k; k++) w[k] = (norm ? w[k] / (sum + 1e-20f) : w[k]) * r->scale;
}

void router_select(const exec_t *ex, const router_t *r, const float *x, int n, int32_t *idx, float *w, float *scratch) {
    int E = r->n_experts;
    float *s = scratch, *b = scratch + (size_t)n * E;
    linear_apply(ex, &r->gate, x, s, n);               /* s[n, E] = logits */
    for (int i = 0; i < n; i++) {
        float *si = s + (size_t)i * E;
        if (r->scoring == SCORING_SOFTMAX) softmax_row(si, E);
        else for (int e = 0; e < E; e++) si[e] = 1.0f / (1.0f + expf(-si[e]));
        select_row(r, si, b + (size_t)i * E, idx + (size_t)i * r->top_k, w + (size_t)i * r->top_k);
    }
}
