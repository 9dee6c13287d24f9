/* experts_local.c - see experts_local.h. */
#include "experts_local.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/expert_group.h"

typedef struct experts_local {
    moe_backend_t base;      /* must be first: the vtable pointer is the object pointer */
    int n_layers, n_experts, hidden;
    expert_t **experts;      /* [n_layers][n_experts] pointers; NULL rows for dense layers */
    expert_t *storage;       /* [n_moe_layers * n_experts] */
    int64_t *counts;         /* [n_layers * n_experts] */
} experts_local_t;

static int local_routed(moe_backend_t *self, int layer, const float *x, int n, int k, const int32_t *idx,
                        const float *w, float *out, spex_err_t *err) {
    experts_local_t *b = (experts_local_t *)self;
    if (layer < 0 || layer >= b->n_layers || !b->experts[(size_t)layer * b->n_experts])
        return spex_fail(err, "experts: layer %d has no routed experts", layer);
    for (size_t i = 0; i < (size_t)n * b->hidden; i++) out[i] = 0.0f;
    expert_group_stats_t st = {b->counts + (size_t)layer * b->n_experts};
    return expert_group_apply(b->experts + (size_t)layer * b->n_experts, b->n_experts, x, n, b->hidden, k, idx, w,
                              out, &st, err);
}

static void local_destroy(moe_backend_t *self) {
    experts_local_t *b = (experts_local_t *)self;
    if (!b) return;
    if (b->experts) {
        for (size_t i = 0; i < (size_t)b->n_layers * b->n_experts; i++)
            if (b->experts[i]) expert_free(b->experts[i]);
    }
    free(b->experts);
    free(b->storage);
    free(b->counts);
    free(b);
}

moe_backend_t *experts_local_create(const spex_config_t *cfg, const tensor_store_t *ts, spex_err_t *err) {
    experts_local_t *b = calloc(1, sizeof *b);
    if (!b) { spex_fail(err, "experts: out of memory"); return NULL; }
    b->base.routed = local_routed;
    b->base.destroy = local_destroy;
    b->n_layers = cfg->num_hidden_layers + cfg->num_nextn_predict_layers;
    b->n_experts = cfg->n_routed_experts;
    b->hidden = cfg->hidden_size;
    size_t slots = (size_t)b->n_layers * b->n_experts;
    b->experts = calloc(slots ? slots : 1, sizeof(expert_t *));
    b->storage = calloc(slots ? slots : 1, sizeof(expert_t));
    b->counts = calloc(slots ? slots : 1, sizeof(int64_t));
    if (!b->experts || !b->storage || !b->counts) {
        local_destroy(&b->base);
        spex_fail(err, "experts: out of memory");
        return NULL;
    }
    for (int l = 0; l < b->n_layers; l++) {
        if (!config_layer_is_moe(cfg, l)) continue;
        for (int e = 0; e < b->n_experts; e++) {
            char prefix[256];
            size_t s = (size_t)l * b->n_experts + e;
            snprintf(prefix, sizeof prefix, "model.layers.%d.mlp.experts.%d", l, e);
            if (expert_load(&b->storage[s], ts, prefix, cfg->hidden_size, cfg->moe_intermediate_size, err)) {
                expert_free(&b->storage[s]);
                local_destroy(&b->base);
                return NULL;
            }
            b->experts[s] = &b->storage[s];
        }
    }
    return &b->base;
}

const int64_t *experts_local_load_counts(const moe_backend_t *b) {
    return b && b->routed == local_routed ? ((const experts_local_t *)b)->counts : NULL;
}
