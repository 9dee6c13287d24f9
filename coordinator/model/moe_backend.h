/* moe_backend.h - where the routed experts run.
 *
 * The coordinator's MoE layer routes tokens and then hands rows, expert ids and
 * gate weights to a backend, which returns the gate-weighted sum of the routed
 * experts per row. The in-process backend (experts_local.c) holds every expert;
 * the MPI backend sends the rows to the worker ranks that host them. The model
 * code is the same for both. */
#ifndef SPEX_MOE_BACKEND_H
#define SPEX_MOE_BACKEND_H

#include <stdint.h>
#include "core/error.h"

typedef struct moe_backend moe_backend_t;

struct moe_backend {
    /* out[n, hidden] = sum_j w[i,j] * expert_{idx[i,j]}(x[i]) for decoder layer
     * `layer` (model layer index; MTP layers follow the main ones). idx rows are
     * sorted by expert id. */
    int (*routed)(moe_backend_t *self, int layer, const float *x, int n, int k, const int32_t *idx, const float *w,
                  float *out, spex_err_t *err);
    /* Release everything the backend owns, including itself. */
    void (*destroy)(moe_backend_t *self);
};

#endif
