/* expert_digest.c - see expert_digest.h. XXH3-64 (libxxhash) hashes far faster
 * than a file is read, so the cost is reading the bytes (measured in
 * docs/reliability.md). */
#include "expert_digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY   /* XXH3_state_t on the stack */
#include <xxhash.h>

static const char *const PARTS[] = {"gate_proj.weight", "up_proj.weight", "down_proj.weight"};

/* Name, dtype, shape and bytes of tensor `name` into the state; absent + optional: nothing. */
void expert_digest_buf_free(expert_digest_buf_t *b) {
    free(b->p);
    *b = (expert_digest_buf_t){0};
}

static int hash_tensor(XXH3_state_t *s, const tensor_store_t *ts, const char *name, bool optional,
                       expert_digest_buf_t *buf, uint64_t *bytes, spex_err_t *err) {
    const st_tensor_t *t = tensor_store_find(ts, name);
    if (!t) return optional ? 0 : spex_fail(err, "expert digest: tensor '%s' is missing", name);
    if (t->nbytes > buf->cap) {
        free(buf->p);
        if (!(buf->p = malloc(t->nbytes))) {
            buf->cap = 0;
            return spex_fail(err, "expert digest: out of memory for tensor '%s'", name);
        }
        buf->cap = t->nbytes;
    }
    if (tensor_store_read(ts, t, buf->p, err)) return -1;
    int32_t meta[2 + ST_MAX_DIMS] = {(int32_t)t->dtype, t->ndim};
    for (int d = 0; d < t->ndim && d < ST_MAX_DIMS; d++) meta[2 + d] = (int32_t)t->shape[d];
    XXH3_64bits_update(s, name, strlen(name));
    XXH3_64bits_update(s, meta, sizeof meta);
    XXH3_64bits_update(s, buf->p, t->nbytes);
    if (bytes) *bytes += t->nbytes;
    return 0;
}

int expert_digest_one(const tensor_store_t *ts, int layer, int e, expert_digest_buf_t *buf, uint64_t *digest,
                      uint64_t *bytes, spex_err_t *err) {
    XXH3_state_t s;
    char name[256];
    XXH3_INITSTATE(&s);
    XXH3_64bits_reset(&s);
    for (size_t i = 0; i < sizeof PARTS / sizeof PARTS[0]; i++) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.%s", layer, e, PARTS[i]);
        if (hash_tensor(&s, ts, name, false, buf, bytes, err)) return -1;
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.%s_scale_inv", layer, e, PARTS[i]);
        if (hash_tensor(&s, ts, name, true, buf, bytes, err)) return -1;
    }
    uint64_t d = XXH3_64bits_digest(&s);
    *digest = d ? d : 1;
    return 0;
}

int expert_digest_all(const spex_config_t *cfg, const tensor_store_t *ts, uint64_t *out, uint64_t *bytes,
                      spex_err_t *err) {
    int L = cfg->num_hidden_layers + cfg->num_nextn_predict_layers, E = cfg->n_routed_experts, rc = 0;
    expert_digest_buf_t buf = {0};
    for (int l = 0; l < L && !rc; l++)
        for (int e = 0; e < E && !rc; e++) {
            uint64_t *d = &out[(size_t)l * E + e];
            *d = 0;
            if (config_layer_is_moe(cfg, l)) rc = expert_digest_one(ts, l, e, &buf, d, bytes, err);
        }
    expert_digest_buf_free(&buf);
    return rc;
}
