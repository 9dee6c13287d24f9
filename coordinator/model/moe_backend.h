/* moe_backend.h - where the routed experts run.
 *
 * The coordinator's MoE layer routes tokens and then hands rows, expert ids and
 * gate weights to a backend, which returns the gate-weighted sum of the routed
 * experts per row. The in-process backend (experts_local.c) holds every expert;
 * the MPI backend sends the rows to the worker ranks that host them. The model
 * code is the same for both.
 *
 * A call can also be split in two, so the coordinator works while the rows are
 * away (micro-batch overlap, model.h): begin() routes and sends, end() waits,
 * receives and sums. Up to MOE_MAX_INFLIGHT calls may be begun and not yet
 * ended; they are ended in the order they were begun. Every row's result is the
 * same bits as routed() would give: a row's sum does not depend on the split. */
#ifndef SPEX_MOE_BACKEND_H
#define SPEX_MOE_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include "core/error.h"

typedef struct moe_backend moe_backend_t;

/* Most calls begun and not yet ended at once. */
#define MOE_MAX_INFLIGHT 2

struct moe_backend {
    /* out[n, hidden] = sum_j w[i,j] * expert_{idx[i,j]}(x[i]) for decoder layer
     * `layer` (model layer index; MTP layers follow the main ones). idx rows are
     * sorted by expert id. */
    int (*routed)(moe_backend_t *self, int layer, const float *x, int n, int k, const int32_t *idx, const float *w,
                  float *out, spex_err_t *err);
    /* Start a call: same arguments as routed(); x, idx, w and out must stay
     * valid and unchanged until end(). *ticket names it for end(). A backend
     * without workers may do all the work here. On failure nothing of the call
     * is left in flight (no end() is owed). */
    int (*begin)(moe_backend_t *self, int layer, const float *x, int n, int k, const int32_t *idx, const float *w,
                 float *out, int *ticket, spex_err_t *err);
    /* Finish call `ticket`: out[n, hidden] is written when this returns 0. With
     * out_discard set (an error elsewhere), only wait for the answers (bounded)
     * so that nothing of the call stays in flight; out is not touched. */
    int (*end)(moe_backend_t *self, int ticket, bool out_discard, spex_err_t *err);
    /* Optional (NULL: nothing to do): let calls in flight progress while the
     * caller computes between begin() and end() (frames moving on the link). */
    void (*progress)(moe_backend_t *self);
    /* Release everything the backend owns, including itself. */
    void (*destroy)(moe_backend_t *self);
};

#endif
