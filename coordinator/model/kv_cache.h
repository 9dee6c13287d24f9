/* kv_cache.h - MLA's compressed KV cache for one sequence.
 *
 * Instead of per-head keys and values, MLA caches per token and per layer only
 * the normalised latent c_kv [kv_lora_rank] and the shared RoPE key k_pe
 * [qk_rope_head_dim] (576 floats per token per layer for DeepSeek-V3, vs
 * 2 * 128 heads * 128 dims for plain multi-head attention). Attention reads it
 * through the absorbed weights (see mla.h).
 *
 * Layers 0..L-1 are the main model; L..L+M-1 the MTP modules, each with its own
 * length, since MTP positions advance separately during speculative decoding.
 * Rolling back (rejected drafts) is just lowering a length.
 *
 * A token's entry is one row [c_kv | k_pe] (kv_lora + rope floats): attention
 * scores it with one dot product of [q_nope W_uk | q_pe] against the row. */
#ifndef SPEX_KV_CACHE_H
#define SPEX_KV_CACHE_H

#include "core/error.h"

typedef struct kv_cache {
    int n_layers;      /* main + MTP layers */
    int kv_lora, rope; /* floats per token: latent and rope key */
    int width;         /* kv_lora + rope: the stride of a layer's rows */
    int capacity;      /* max tokens per layer */
    int *len;          /* [n_layers] tokens cached per layer */
    float **rows;      /* [n_layers][capacity, width]: row t = [c_kv (kv_lora) | k_pe (rope)] */
} kv_cache_t;

kv_cache_t *kv_cache_create(int n_layers, int kv_lora, int rope, int capacity, spex_err_t *err);
void kv_cache_free(kv_cache_t *kv);

/* Forget everything in layers [first, first + count). */
void kv_cache_reset(kv_cache_t *kv, int first, int count);
/* Roll layers [first, first+count) back to at most new_len tokens. */
void kv_cache_truncate(kv_cache_t *kv, int first, int count, int new_len);

/* Bytes held per token over all layers (for capacity accounting and stats). */
size_t kv_cache_bytes_per_token(const kv_cache_t *kv);

#endif
