/* kv_cache.c - see kv_cache.h. Storage is allocated up front for `capacity`
 * tokens so that appending in the decode loop never allocates. */
#include "kv_cache.h"

#include <stdlib.h>

kv_cache_t *kv_cache_create(int n_layers, int kv_lora, int rope, int capacity, spex_err_t *err) {
    if (n_layers <= 0 || kv_lora <= 0 || rope < 0 || capacity <= 0) {
        spex_fail(err, "kv cache: invalid sizes (layers %d, kv_lora %d, rope %d, capacity %d)", n_layers, kv_lora,
                  rope, capacity);
        return NULL;
    }
    kv_cache_t *kv = calloc(1, sizeof *kv);
    if (!kv) goto oom;
    kv->n_layers = n_layers;
    kv->kv_lora = kv_lora;
    kv->rope = rope;
    kv->width = kv_lora + rope;
    kv->capacity = capacity;
    kv->len = calloc((size_t)n_layers, sizeof(int));
    kv->rows = calloc((size_t)n_layers, sizeof(float *));
    if (!kv->len || !kv->rows) goto oom;
    for (int l = 0; l < n_layers; l++)
        if (!(kv->rows[l] = malloc(sizeof(float) * (size_t)capacity * kv->width))) goto oom;
    return kv;
oom:
    kv_cache_free(kv);
    spex_fail(err, "kv cache: out of memory for %d tokens x %d layers", capacity, n_layers);
    return NULL;
}

void kv_cache_free(kv_cache_t *kv) {
    if (!kv) return;
    for (int l = 0; l < kv->n_layers && kv->rows; l++) free(kv->rows[l]);
    free(kv->rows);
    free(kv->len);
    free(kv);
}

void kv_cache_reset(kv_cache_t *kv, int first, int count) {
    for (int l = first; l < first + count && l < kv->n_layers; l++) kv->len[l] = 0;
}

void kv_cache_truncate(kv_cache_t *kv, int first, int count, int new_len) {
    for (int l = first; l < first + count && l < kv->n_layers; l++)
        if (kv->len[l] > new_len) kv->len[l] = new_len < 0 ? 0 : new_len;
}

size_t kv_cache_bytes_per_token(const kv_cache_t *kv) {
    return sizeof(float) * (size_t)kv->n_layers * (size_t)(kv->kv_lora + kv->rope);
}
