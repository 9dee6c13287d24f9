/* model.h - a DeepSeek-V3-architecture model on the coordinator: weights and forward pass.
 *
 *   h = embed(tokens)                                    [n, hidden]
 *   per decoder layer l:
 *     h += MLA(rmsnorm(h))                               latent KV cache, layer l
 *     h += FFN(rmsnorm(h))     dense SwiGLU (l < first_k_dense_replace) or
 *                              MoE: router -> routed experts (backend) + shared experts
 *   hidden = rmsnorm(h) (model.norm);  logits = lm_head(hidden)   [n, vocab]
 *
 * MTP module m (decoder layer index L + m) predicts one token further:
 *   x = eh_proj([enorm(embed(t_{i+1})) ; hnorm(hidden_i)])  -> decoder layer (own
 *   KV cache) -> shared_head.norm -> shared_head.head.
 *
 * A forward call takes a batch made of several sequences (each with its own
 * KV cache, its rows contiguous); attention is per sequence, everything else
 * runs on all rows at once. The routed experts run wherever the backend puts them.
 * With overlap (overlap_min_rows), a step of several rows goes through the decoder layers as
 * two micro-batches, pipelined so that one's routed experts are away while the
 * other's attention, router and shared experts run (layer_pipeline.h); the bits
 * are the same either way.
 *
 * Weights stay in the checkpoint's precision (core/linear.h) and every kernel
 * is row-independent (core/matmul.h, coordinator/model/mla.h): a row's logits are
 * the same bits whatever else is in the batch, whether it is computed in a
 * prefill, a decode or a verify step, on any number of threads, on any SIMD
 * path - so speculation and batching cannot change a greedy token. */
#ifndef SPEX_MODEL_H
#define SPEX_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/config.h"
#include "core/expert.h"
#include "core/rope.h"
#include "core/safetensors.h"
#include "coordinator/model/bias_balance.h"
#include "coordinator/model/mla.h"
#include "coordinator/model/moe_backend.h"
#include "coordinator/model/prefix_cache.h"
#include "coordinator/model/router.h"

typedef struct decoder_layer {
    float *attn_norm, *ffn_norm;  /* input_layernorm, post_attention_layernorm: [hidden] */
    mla_t attn;
    bool moe;
    expert_t dense;               /* FFN of a dense layer */
    router_t router;              /* MoE layers */
    bool has_shared;
    expert_t shared;              /* shared experts fused: inter = moe_inter * n_shared */
} decoder_layer_t;

typedef struct mtp_module {
    float *enorm, *hnorm;         /* [hidden] */
    linear_t eh_proj;             /* [hidden, 2 * hidden] */
    decoder_layer_t block;
    float *head_norm;             /* shared_head.norm [hidden] */
    linear_t head;                /* shared_head.head [vocab, hidden] */
} mtp_module_t;

/* Where forward time goes, in seconds summed over all calls (main and MTP):
 * attention = MLA incl. its norms; routed = the moe_backend call (in process:
 * the experts; with workers: dispatch + wait + combine); ffn = dense layers,
 * shared experts and routers; head = final norm + lm_head. Benchmarks read
 * differences of it; nothing else depends on it. */
typedef struct model_timing {
    double attention, routed, ffn, head;
} model_timing_t;

/* The model's grow-only forward buffers (model_t.scratch), one per role: calls
 * nest (forward -> layer stage -> attention / FFN), so roles never share one. */
enum { MODEL_S_H, MODEL_S_FFN, MODEL_S_ATTN, MODEL_S_HEAD, MODEL_S_COUNT };

typedef struct model {
    spex_config_t cfg;
    char *dir;
    tensor_store_t *ts;
    linear_t embed;               /* model.embed_tokens [vocab, hidden], rows looked up */
    decoder_layer_t *layers;      /* [num_hidden_layers] */
    float *final_norm;            /* [hidden] */
    linear_t lm_head;             /* [vocab, hidden] */
    mtp_module_t *mtp;            /* [n_mtp] */
    int n_mtp;
    rope_t rope;
    moe_backend_t *experts;       /* owned */
    threadpool_t *pool;           /* owned; every kernel of this model runs on it */
    arena_t scratch[MODEL_S_COUNT];   /* grow-only forward buffers (MODEL_S_*): no malloc per step */
    arena_t micro[MOE_MAX_INFLIGHT];  /* per micro-batch: a layer's rows between its two stages */
    mla_seq_t *micro_seqs;        /* [micro_seqs_cap]: the micro-batches' shares of the sequences */
    int micro_seqs_cap;
    int overlap_min_rows;         /* overlap the routed round trip in steps of at least this many rows
                                     (1: always, 0: never, the default; the CLI sets it) */
    arena_t step[3];              /* the same for the decode engine (decode/engine.c): a verify step's
                                     rows [0] stay alive while the MTP catch-up uses [1]; [2] lists
                                     the step's decoding sequences */
    exec_t ex;                    /* pool + SIMD path */
    model_timing_t timing;        /* accumulated by every forward */
    bias_balance_t *balance;      /* owned; NULL unless dynamic routing bias is on */
    prefix_cache_t *prefix;       /* owned; NULL unless the prompt (prefix) cache is on: the decode
                                     engine restores cached prompt prefixes and remembers new ones */
} model_t;

typedef struct model_options {
    bool load_mtp;                /* load MTP modules if the checkpoint has them */
    bool local_experts;           /* load routed experts in-process (world size 1) */
    int max_positions;            /* rope table size; 0 = max_position_embeddings */
    int threads;                  /* 0 = threadpool_default_threads() */
    const char *simd;             /* "auto" (NULL) | "avx512" | "avx2" | "portable" */
    tensor_residency_t residency; /* weights in place (default) or copied; prefault */
    /* Called as loading proceeds (done of total steps: one per decoder layer,
     * plus one per MoE layer's routed experts); may be NULL. */
    void (*progress)(void *user, int done, int total);
    void *progress_user;
} model_options_t;

/* Load config.json + safetensors from `dir`. */
model_t *model_load(const char *dir, const model_options_t *opt, spex_err_t *err);
void model_free(model_t *m);

/* Turn on dynamic routing bias (bias_balance.h) for the main model's MoE
 * layers: every `window` rows of a layer, each expert's selection bias moves
 * by `rate` towards balance. Changes outputs; off unless called. */
int model_set_bias_update(model_t *m, float rate, int window, spex_err_t *err);

/* Turn on the prefix cache (prefix_cache.h) with room for max_bytes of KV rows. */
int model_set_prefix_cache(model_t *m, size_t max_bytes, spex_err_t *err);

/* Replace the routed-expert backend (takes ownership; frees the old one). */
void model_set_experts(model_t *m, moe_backend_t *backend);

/* Number of decoder layers with a KV cache (main + loaded MTP). */
int model_cache_layers(const model_t *m);

/* Main model over a batch: tokens[n] split into seqs (rows appended to each
 * sequence's cache). hidden_out[n, hidden] (after model.norm; may be NULL);
 * logits[count, vocab] for the rows with want[i] != 0 (want NULL = all rows;
 * logits NULL = none). */
int model_forward(model_t *m, const int32_t *tokens, const mla_seq_t *seqs, int n_seqs, float *hidden_out,
                  const uint8_t *want, float *logits, spex_err_t *err);

/* MTP module `k` over a batch: row i combines hidden_in[i] (main model, after
 * model.norm, at position p) with the embedding of tokens[i] (the token at
 * p + 1); rows are appended to each sequence's MTP cache (layer L + k).
 * hidden_out[n, hidden] = after shared_head.norm (feeds a next MTP step). */
/* The same rows, where only each sequence's LAST row has an output:
 * hidden_out[n_seqs, hidden] and logits[n_seqs, vocab] (either may be NULL).
 * The module is one decoder layer, so the other rows' only use is their cache
 * entries (which the last rows attend to): they get those and nothing else -
 * no attention, no experts, no head. Cache and outputs are bit-identical to
 * model_mtp_forward's. The engine's MTP catch-up and prompt rows are this. */
int model_mtp_forward_last(model_t *m, int k, const int32_t *tokens, const float *hidden_in, const mla_seq_t *seqs,
                           int n_seqs, float *hidden_out, float *logits, spex_err_t *err);
int model_mtp_forward(model_t *m, int k, const int32_t *tokens, const float *hidden_in, const mla_seq_t *seqs,
                      int n_seqs, float *hidden_out, const uint8_t *want, float *logits, spex_err_t *err);

#endif
