/* expert.h - one SwiGLU feed-forward network: down(silu(gate(x)) * up(x)).
 *
 * The same struct and function serve the dense layers, the shared experts and
 * the routed experts, on the coordinator and on worker ranks alike, so every
 * place that computes an expert computes it with the same bits. */
#ifndef SPEX_EXPERT_H
#define SPEX_EXPERT_H

#include "core/linear.h"

typedef struct expert {
    linear_t gate;   /* [inter, hidden] */
    linear_t up;     /* [inter, hidden] */
    linear_t down;   /* [hidden, inter] */
} expert_t;

/* Load `<prefix>.gate_proj.weight` etc., e.g. prefix "model.layers.3.mlp.experts.7". */
int expert_load(expert_t *e, const tensor_store_t *ts, const char *prefix, int hidden, int inter, spex_err_t *err);
void expert_free(expert_t *e);

/* y[n, hidden] = expert(x[n, hidden]) through OpenBLAS. scratch: 2 * n * inter floats. */
void expert_forward(const expert_t *e, const float *x, float *y, int n, float *scratch);

/* Same, row-independent to the bit (linear_forward_rows): for routed experts,
 * whose batches differ between placements. */
void expert_forward_rows(const expert_t *e, const float *x, float *y, int n, float *scratch);

static inline void expert_apply(const expert_t *e, const float *x, float *y, int n, float *scratch, bool exact) {
    if (exact) expert_forward_rows(e, x, y, n, scratch);
    else expert_forward(e, x, y, n, scratch);
}

#endif
