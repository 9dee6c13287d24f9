/* bias_balance.h - dynamic routing bias: DeepSeek-V3's aux-loss-free load
 * balancing, applied while serving (opt-in: it changes outputs).
 *
 * DeepSeek-V3 trains with a per-expert bias b_e that is added to the routing
 * scores for *selection only* (the gate weights that scale expert outputs stay
 * unbiased), and after each step nudges it: b_e += G * sign(mean load - load_e).
 * Here the same controller runs at inference: each MoE layer counts how many
 * rows chose each expert; every `window` routed rows of that layer, each
 * expert's extra bias moves by `rate` towards balance and the counts restart.
 * The extra bias adds to the checkpoint's e_score_correction_bias.
 *
 * Because a row's experts then depend on the rows routed before it (other
 * requests, their order and batching), results are no longer independent of
 * the batch: the CLI refuses it together with a promise of exact results. */
#ifndef SPEX_BIAS_BALANCE_H
#define SPEX_BIAS_BALANCE_H

#include <stdint.h>

#include "core/error.h"

typedef struct bias_balance bias_balance_t;

/* A controller for n_layers MoE layers of n_experts each (top_k per row). */
bias_balance_t *bias_balance_create(int n_layers, int n_experts, int top_k, float rate, int window, spex_err_t *err);
void bias_balance_free(bias_balance_t *b);

/* The extra selection bias of MoE layer `l` [n_experts]. */
const float *bias_balance_delta(const bias_balance_t *b, int l);

/* Count the choices idx[n, top_k] of MoE layer l; updates that layer's bias
 * whenever `window` rows have been counted since its last update. */
void bias_balance_observe(bias_balance_t *b, int l, const int32_t *idx, int n);

/* One layer's update rule on its own (exposed for tests): delta[e] += rate *
 * sign(mean - load[e]) with mean = sum(load) / n_experts; sign(0) = 0. */
void bias_balance_rule(float *delta, const uint64_t *load, int n_experts, float rate);

/* Totals since creation: windows closed (over all layers), and the max/mean
 * load of the most recently closed window, averaged over layers (1 = perfect). */
typedef struct bias_balance_stats {
    uint64_t updates;
    double last_max_over_mean;
} bias_balance_stats_t;
bias_balance_stats_t bias_balance_stats(const bias_balance_t *b);

#endif
