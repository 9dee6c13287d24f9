/* bias_balance.c - see bias_balance.h. */
#include "bias_balance.h"

#include <stdlib.h>
#include <string.h>

struct bias_balance {
    int n_layers, n_experts, top_k, window;
    float rate;
    float *delta;          /* [n_layers, n_experts] extra selection bias */
    uint64_t *load;        /* [n_layers, n_experts] choices in the open window */
    int *rows;             /* [n_layers] rows counted in the open window */
    double *last_ratio;    /* [n_layers] max/mean of the last closed window (0 = none yet) */
    uint64_t updates;
};

bias_balance_t *bias_balance_create(int n_layers, int n_experts, int top_k, float rate, int window, spex_err_t *err) {
    if (n_layers <= 0 || n_experts <= 0 || top_k <= 0 || top_k > n_experts) {
        spex_fail(err, "bias balancing: invalid shape (%d MoE layers, %d experts, top %d)", n_layers, n_experts, top_k);
        return NULL;
    }
    if (!(rate > 0 && rate <= 1)) {
        spex_fail(err, "--bias-update-rate must be in (0, 1], got %g", (double)rate);
        return NULL;
    }
    if (window < 1) {
        spex_fail(err, "--bias-update-window must be at least 1 row, got %d", window);
        return NULL;
    }
    bias_balance_t *b = calloc(1, sizeof *b);
    size_t n = (size_t)n_layers * (size_t)n_experts;
    if (b) {
        b->delta = calloc(n, sizeof *b->delta);
        b->load = calloc(n, sizeof *b->load);
        b->rows = calloc((size_t)n_layers, sizeof *b->rows);
        b->last_ratio = calloc((size_t)n_layers, sizeof *b->last_ratio);
    }
    if (!b || !b->delta || !b->load || !b->rows || !b->last_ratio) {
        bias_balance_free(b);
        spex_fail(err, "bias balancing: out of memory");
        return NULL;
    }
    b->n_layers = n_layers, b->n_experts = n_experts, b->top_k = top_k, b->window = window, b->rate = rate;
    return b;
}

void bias_balance_free(bias_balance_t *b) {
    if (!b) return;
    free(b->delta);
    free(b->load);
    free(b->rows);
    free(b->last_ratio);
    free(b);
}

const float *bias_balance_delta(const bias_balance_t *b, int l) { return b->delta + (size_t)l * b->n_experts; }

void bias_balance_rule(float *delta, const uint64_t *load, int n_experts, float rate) {
    uint64_t total = 0;
    for (int e = 0; e < n_experts; e++) total += load[e];
    for (int e = 0; e < n_experts; e++) {
        /* compare load * E with the total: integers, so "equal to the mean" is exact */
        uint64_t scaled = load[e] * (uint64_t)n_experts;
        if (scaled < total) delta[e] += rate;        /* under-loaded: more attractive */
        else if (scaled > total) delta[e] -= rate;   /* over-loaded: less */
    }
}

static double max_over_mean(const uint64_t *load, int n_experts) {
    uint64_t total = 0, max = 0;
    for (int e = 0; e < n_experts; e++) {
        total += load[e];
        if (load[e] > max) max = load[e];
    }
    return total ? (double)max * n_experts / (double)total : 0;
}

void bias_balance_observe(bias_balance_t *b, int l, const int32_t *idx, int n) {
    uint64_t *load = b->load + (size_t)l * b->n_experts;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < b->top_k; k++) {
            int32_t e = idx[(size_t)i * b->top_k + k];
            if (e >= 0 && e < b->n_experts) load[e]++;
        }
        if (++b->rows[l] < b->window) continue;
        b->last_ratio[l] = max_over_mean(load, b->n_experts);
        bias_balance_rule(b->delta + (size_t)l * b->n_experts, load, b->n_experts, b->rate);
        memset(load, 0, sizeof *load * (size_t)b->n_experts);
        b->rows[l] = 0;
        b->updates++;
    }
}

bias_balance_stats_t bias_balance_stats(const bias_balance_t *b) {
    bias_balance_stats_t s = {.updates = b->updates};
    int counted = 0;
    for (int l = 0; l < b->n_layers; l++)
        if (b->last_ratio[l] > 0) s.last_max_over_mean += b->last_ratio[l], counted++;
    if (counted) s.last_max_over_mean /= counted;
    return s;
}
