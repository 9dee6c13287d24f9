/* experts_local.c - see experts_local.h. */
#include "experts_local.h"

#include <stdlib.h>

#include "core/expert_shard.h"

typedef struct experts_local {
    moe_backend_t base;      /* must be first: the vtable pointer is the object pointer */
    int n_layers, n_experts;
    const exec_t *ex;
    expert_shard_t *shard;   /* every expert id */
    int64_t *counts;         /* [n_layers * n_experts] */
} experts_local_t;

static int local_routed(moe_backend_t *self, int layer, const float *x, int n, int k, const int32_t *idx,
                        const float *w, float *out, spex_err_t *err) {
    experts_local_t *b = (experts_local_t *)self;
    if (layer < 0 || layer >= b->n_layers) return spex_fail(err, "experts: layer %d has no routed experts", layer);
    /* The router's idx[n, k] is CSR with k pairs per row (ids are >= 0, so the
     * int32 array reads as the uint32 ids the shard takes). */
    expert_rows_t r = {.n = n, .x = x, .k = k, .experts = (const uint32_t *)idx, .weights = w};
    return expert_shard_apply(b->shard, b->ex, layer, &r, true, out, b->counts + (size_t)layer * b->n_experts, err);
}

/* In process there is nothing to overlap with: begin() does the work. */
static int local_begin(moe_backend_t *self, int layer, const float *x, int n, int k, const int32_t *idx,
                       const float *w, float *out, int *ticket, spex_err_t *err) {
    *ticket = 0;
    return local_routed(self, layer, x, n, k, idx, w, out, err);
}

static int local_end(moe_backend_t *self, int ticket, bool out_discard, spex_err_t *err) {
    (void)self, (void)ticket, (void)out_discard, (void)err;
    return 0;
}

static void local_destroy(moe_backend_t *self) {
    experts_local_t *b = (experts_local_t *)self;
    if (!b) return;
    expert_shard_free(b->shard);
    free(b->counts);
    free(b);
}

moe_backend_t *experts_local_create(const spex_config_t *cfg, const tensor_store_t *ts, const exec_t *ex,
                                    spex_err_t *err) {
    experts_local_t *b = calloc(1, sizeof *b);
    int *ids = malloc(sizeof(int) * (size_t)(cfg->n_routed_experts > 0 ? cfg->n_routed_experts : 1));
    if (!b || !ids) {
        free(b);
        free(ids);
        spex_fail(err, "experts: out of memory");
        return NULL;
    }
    b->base.routed = local_routed;
    b->base.begin = local_begin;
    b->base.end = local_end;
    b->base.destroy = local_destroy;
    b->n_layers = cfg->num_hidden_layers + cfg->num_nextn_predict_layers;
    b->n_experts = cfg->n_routed_experts;
    b->ex = ex;
    for (int e = 0; e < b->n_experts; e++) ids[e] = e;
    b->counts = calloc((size_t)b->n_layers * (b->n_experts > 0 ? b->n_experts : 1), sizeof(int64_t));
    if (b->counts) b->shard = expert_shard_create(cfg, ts, ids, b->n_experts, NULL, NULL, err);
    else spex_fail(err, "experts: out of memory");
    free(ids);
    if (!b->shard) {
        local_destroy(&b->base);
        return NULL;
    }
    return &b->base;
}

const int64_t *experts_local_load_counts(const moe_backend_t *b) {
    return b && b->routed == local_routed ? ((const experts_local_t *)b)->counts : NULL;
}
