/* model_bytes.c - see model_bytes.h. */
#include "model_bytes.h"

#include <stdio.h>

#include "core/linear.h"

/* The non-routed weights of a decoder layer. */
static uint64_t layer_bytes(const decoder_layer_t *d) {
    const mla_t *a = &d->attn;
    uint64_t b = linear_bytes(&a->q_a) + linear_bytes(&a->q_b) + linear_bytes(&a->q_proj) + linear_bytes(&a->kv_a) +
                 linear_bytes(&a->kv_b) + linear_bytes(&a->o_proj);
    if (!d->moe) return b + expert_bytes(&d->dense);
    return b + linear_bytes(&d->router.gate) + (d->has_shared ? expert_bytes(&d->shared) : 0);
}

/* Top-k routed experts of decoder layer `l` (index in the checkpoint): they share one dtype. */
static uint64_t routed_bytes(const model_t *m, int l) {
    char name[128];
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.0.gate_proj.weight", l);
    const st_tensor_t *t = tensor_store_find(m->ts, name);
    return (uint64_t)m->cfg.num_experts_per_tok * 3ull * (t ? t->nbytes : 0);
}

static uint64_t embed_row_bytes(const model_t *m) {
    return (uint64_t)m->cfg.hidden_size * dtype_size(m->embed.w.dtype);
}

uint64_t model_decode_bytes(const model_t *m) {
    uint64_t b = linear_bytes(&m->lm_head) + embed_row_bytes(m);
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
        b += layer_bytes(&m->layers[l]);
        if (m->layers[l].moe) b += routed_bytes(m, l);
    }
    return b;
}

uint64_t model_mtp_bytes(const model_t *m, int k) {
    if (k < 0 || k >= m->n_mtp) return 0;
    const mtp_module_t *x = &m->mtp[k];
    uint64_t b = embed_row_bytes(m) + linear_bytes(&x->eh_proj) + layer_bytes(&x->block) + linear_bytes(&x->head);
    return x->block.moe ? b + routed_bytes(m, m->cfg.num_hidden_layers + k) : b;
}

uint64_t model_file_bytes(const model_t *m) {
    uint64_t b = 0;
    for (int f = 0; f < tensor_store_file_count(m->ts); f++) b += tensor_store_file_size(m->ts, f);
    return b;
}
