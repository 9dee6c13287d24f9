/* mla.h - Multi-head Latent Attention (DeepSeek-V2/V3) over the latent KV cache.
 *
 * Per token:  q = q_b(norm(q_a(x)))  (or q_proj(x) when q_lora_rank is 0)
 *             [c_kv | k_pe] = kv_a_proj_with_mqa(x);  c_kv = kv_a_layernorm(c_kv)
 *             q_pe, k_pe rotated by RoPE (interleaved pairs)
 * kv_b_proj splits per head into W_uk [qk_nope, kv_lora] and W_uv [v_head, kv_lora].
 * Rather than expanding keys and values for every cached token, attention is
 * computed in the latent space ("absorbed" weights, as DeepSeek's own decode):
 *   score(t) = (q_nope W_uk) . c_kv[t] + q_pe . k_pe[t]           (times softmax scale)
 *   out_h    = W_uv (sum_t p(t) c_kv[t])
 * so the cache holds only c_kv and k_pe, and prefill and decode share one path.
 *
 * Every (row, head) is computed alone with fixed-order loops and the kernels
 * of core/matmul.h, so a row's output is a function of that row and the cache
 * only: a prefill row, a decode row and a speculative verify row agree to the
 * bit. (row, head) pairs are spread over the thread pool. */
#ifndef SPEX_MLA_H
#define SPEX_MLA_H

#include "core/arena.h"
#include "core/config.h"
#include "core/linear.h"
#include "core/rope.h"
#include "coordinator/model/kv_cache.h"

typedef struct mla {
    int n_heads, nope, rope, v_dim, kv_lora, q_lora;
    float eps, softmax_scale;
    linear_t q_a, q_b, q_proj;   /* q_a/q_b when q_lora > 0, else q_proj */
    float *q_a_norm;             /* [q_lora] */
    linear_t kv_a;               /* [kv_lora + rope, hidden] */
    float *kv_norm;              /* [kv_lora] */
    linear_t kv_b;               /* [n_heads * (nope + v_dim), kv_lora] */
    linear_t o_proj;             /* [hidden, n_heads * v_dim] */
} mla_t;

/* Load `<prefix>.self_attn.*`, prefix e.g. "model.layers.4". */
int mla_load(mla_t *a, const spex_config_t *cfg, const tensor_store_t *ts, const char *prefix, spex_err_t *err);
void mla_free(mla_t *a);

/* One sequence's share of a batch: `n` consecutive rows appended to `kv` at layer `layer`. */
typedef struct mla_seq {
    kv_cache_t *kv;
    int n;
} mla_seq_t;

/* out[n_rows, hidden] = attention(x[n_rows, hidden]) where the rows are the
 * concatenation of the sequences' rows in order. Appends each sequence's rows
 * to its cache at `layer` (positions continue from kv->len[layer]). `work` is
 * the caller's grow-only scratch (reused across calls). Fails if a
 * cache would overflow its capacity or the rope table. */
int mla_forward(const exec_t *ex, const mla_t *a, const rope_t *rope, int layer, const mla_seq_t *seqs, int n_seqs,
                const float *x, float *out, arena_t *work, spex_err_t *err);

/* Only the cache half of mla_forward: append each sequence's rows of
 * x[n_rows, hidden] to its cache at `layer` (the same entries mla_forward
 * writes), attending nothing - for rows whose attention output nobody reads
 * but later rows attend to (model_mtp_forward_last). */
int mla_append_rows(const exec_t *ex, const mla_t *a, const rope_t *rope, int layer, const mla_seq_t *seqs,
                    int n_seqs, const float *x, arena_t *work, spex_err_t *err);

#endif
