/* model_check.h - the tensors a DeepSeek-V3-architecture checkpoint must hold.
 *
 * model_tensors() lists every tensor the config implies, with its Hugging Face
 * name and shape, in layer order: the single table that the shape check, the
 * random checkpoint generator (tools/synth) and `spex inspect` share.
 * model_check_tensors() verifies a tensor store against it, so the engine's
 * loader can rely on every needed tensor being present with the right shape.
 *
 * Shapes (H = hidden, V = vocab, n = heads, dq = qk_nope + qk_rope, E = routed experts):
 *   model.embed_tokens.weight [V,H], model.norm.weight [H], lm_head.weight [V,H] (unless tied)
 *   per decoder layer L (0 .. num_hidden_layers + num_nextn_predict_layers - 1):
 *     input_layernorm, post_attention_layernorm [H]
 *     self_attn.q_a_proj [q_lora,H], q_a_layernorm [q_lora], q_b_proj [n*dq,q_lora]  (q_lora_rank > 0)
 *     self_attn.q_proj [n*dq,H]                                                       (q_lora_rank = 0)
 *     self_attn.kv_a_proj_with_mqa [kv_lora+qk_rope,H], kv_a_layernorm [kv_lora],
 *     self_attn.kv_b_proj [n*(qk_nope+v),kv_lora], o_proj [H,n*v]
 *     dense: mlp.{gate,up}_proj [I,H], mlp.down_proj [H,I]
 *     MoE:   mlp.gate.weight [E,H], mlp.gate.e_score_correction_bias [E] (noaux_tc),
 *            mlp.experts.{e}.{gate,up}_proj [Im,H], down_proj [H,Im],
 *            mlp.shared_experts.{gate,up}_proj [S*Im,H], down_proj [H,S*Im] (S = n_shared_experts > 0)
 *   MTP layers (L >= num_hidden_layers) also: embed_tokens [V,H], enorm, hnorm [H],
 *     eh_proj [H,2H], shared_head.norm [H], shared_head.head [V,H]; embed_tokens and
 *     shared_head.head may be left out (then model.embed_tokens / lm_head are used). */
#ifndef SPEX_MODEL_CHECK_H
#define SPEX_MODEL_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "safetensors.h"

#define MODEL_TENSOR_NAME_MAX 96

typedef enum {
    MT_EMBED,        /* token embeddings [V,H] (main and MTP) */
    MT_HEAD,         /* output heads [V,H] (lm_head, shared_head.head) */
    MT_NORM,         /* RMSNorm weights [n] */
    MT_LINEAR,       /* attention / FFN / expert projections [out,in]: F8_E4M3 in DeepSeek's FP8 release */
    MT_LINEAR_HP,    /* projections DeepSeek keeps in high precision (MTP eh_proj) */
    MT_ROUTER,       /* mlp.gate.weight [E,H] */
    MT_ROUTER_BIAS,  /* mlp.gate.e_score_correction_bias [E], F32 */
} model_tensor_kind_t;

typedef struct model_tensor {
    char name[MODEL_TENSOR_NAME_MAX];
    model_tensor_kind_t kind;
    int ndim;
    int64_t shape[2];
    int layer;        /* decoder layer, -1 for global tensors */
    int expert;       /* routed expert index, -1 otherwise */
    bool optional;    /* may be absent: the MTP module's embed_tokens and shared_head.head are
                         the main model's (shared in DeepSeek-V3's training; its release ships copies) */
} model_tensor_t;

/* Every tensor cfg implies, in layer order; *out is malloc'ed (free() it). */
int model_tensors(const spex_config_t *cfg, model_tensor_t **out, size_t *n, spex_err_t *err);

/* Check that `ts` holds every tensor of model_tensors(cfg) with the right shape and
 * a float dtype; an F8_E4M3 tensor also needs `<name>_scale_inv` of shape
 * [ceil(rows/B0), ceil(cols/B1)]. The first problem is the error (naming the file
 * or directory and the tensor). */
int model_check_tensors(const spex_config_t *cfg, const tensor_store_t *ts, spex_err_t *err);

/* Tensors in `ts` that the architecture does not use (not in the table and not a
 * scale_inv of a table entry). Writes the first such name into `first` (if cap > 0). */
size_t model_count_unexpected(const spex_config_t *cfg, const tensor_store_t *ts, char *first, size_t cap);

#endif
