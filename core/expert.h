/* expert.h - one SwiGLU feed-forward network: down(silu(gate(x)) * up(x)).
 *
 * The same struct and function serve the dense layers, the shared experts and
 * the routed experts, on the coordinator and on worker ranks alike, so every
 * place that computes an expert computes it with the same bits (core/matmul.h:
 * a row's result does not depend on the rows computed with it). */
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

/* y[n, hidden] = expert(x[n, hidden]). scratch: 2 * n * inter floats. */
void expert_forward(const exec_t *ex, const expert_t *e, const float *x, float *y, int n, float *scratch);

/* Bytes of the three stored matrices. */
uint64_t expert_bytes(const expert_t *e);

#endif
