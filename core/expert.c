/* expert.c - see expert.h. Three products over the n rows routed here. */
#include "expert.h"
#include "kernels.h"

#include <stdio.h>

int expert_load(expert_t *e, const tensor_store_t *ts, const char *prefix, int hidden, int inter, spex_err_t *err) {
    char name[512];
    snprintf(name, sizeof name, "%s.gate_proj.weight", prefix);
    if (linear_load(&e->gate, ts, name, inter, hidden, err)) return -1;
    snprintf(name, sizeof name, "%s.up_proj.weight", prefix);
    if (linear_load(&e->up, ts, name, inter, hidden, err)) return -1;
    snprintf(name, sizeof name, "%s.down_proj.weight", prefix);
    if (linear_load(&e->down, ts, name, hidden, inter, err)) return -1;
    return 0;
}

void expert_free(expert_t *e) {
    if (!e) return;
    linear_free(&e->gate);
    linear_free(&e->up);
    linear_free(&e->down);
}

void expert_forward(const exec_t *ex, const expert_t *e, const float *x, float *y, int n, float *scratch) {
    int inter = e->gate.out;
    float *g = scratch;                          /* [n, inter] */
    float *u = scratch + (size_t)n * inter;      /* [n, inter] */
    linear_apply(ex, &e->gate, x, g, n);
    linear_apply(ex, &e->up, x, u, n);
    swiglu_inplace(u, g, (size_t)n * inter);
    linear_apply(ex, &e->down, u, y, n);
}

uint64_t expert_bytes(const expert_t *e) {
    return linear_bytes(&e->gate) + linear_bytes(&e->up) + linear_bytes(&e->down);
}
