/* router.h - DeepSeek-V3's MoE gate: which experts each token visits, and with what weight.
 *
 *  s = sigmoid(x W_gate^T)                  (softmax for DeepSeek-V2-style configs)
 *  b = s + e_score_correction_bias          (selection only: the bias never scales outputs)
 *      (+ extra_bias when dynamic balancing is on: bias_balance.h)
 *  groups: n_group groups of experts; group score = sum of the top-2 biased scores
 *          (noaux_tc) or max score (group_limited_greedy); keep topk_group groups,
 *          mask the rest with -inf
 *  pick top-k experts by b; weights = their UNBIASED s, normalised to sum 1 when
 *          norm_topk_prob, times routed_scaling_factor.
 * Ties pick the lower expert id (deterministic on every rank). */
#ifndef SPEX_ROUTER_H
#define SPEX_ROUTER_H

#include <stdint.h>
#include "core/config.h"
#include "core/linear.h"

typedef struct router {
    int n_experts, top_k, n_group, topk_group;
    spex_scoring_t scoring;
    spex_topk_method_t method;
    bool norm_topk_prob;
    float scale;
    linear_t gate;      /* [n_experts, hidden] */
    float *bias;        /* [n_experts] or NULL */
    const float *extra_bias;   /* [n_experts] or NULL: dynamic selection bias (bias_balance.h), not owned */
} router_t;

/* Load `<prefix>.mlp.gate.*`. */
int router_load(router_t *r, const spex_config_t *cfg, const tensor_store_t *ts, const char *prefix, spex_err_t *err);
void router_free(router_t *r);

/* idx[n, top_k], w[n, top_k] for x[n, hidden]; idx of a row sorted by expert id.
 * scratch: 2 * n * n_experts floats. */
void router_select(const exec_t *ex, const router_t *r, const float *x, int n, int32_t *idx, float *w, float *scratch);

#endif
