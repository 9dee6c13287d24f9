/* config.h - the model hyper-parameters read from a Hugging Face config.json.
 *
 * Every key DeepSeek-V3 uses is parsed; keys the engine relies on are validated
 * (positive, mutually consistent) and a bad value is an error naming the field.
 * Absent optional keys take DeepSeek-V3's defaults (see config.c). */
#ifndef SPEX_CONFIG_H
#define SPEX_CONFIG_H

#include <stdbool.h>
#include "error.h"

typedef enum { SCORING_SIGMOID = 0, SCORING_SOFTMAX = 1 } spex_scoring_t;
typedef enum { TOPK_NOAUX_TC = 0, TOPK_GREEDY = 1, TOPK_GROUP_LIMITED_GREEDY = 2 } spex_topk_method_t;

typedef struct spex_rope_scaling {
    bool yarn;                 /* rope_scaling.type == "yarn"; false = plain RoPE */
    double factor;
    int original_max_position_embeddings;
    double beta_fast, beta_slow;
    double mscale, mscale_all_dim;
} spex_rope_scaling_t;

typedef struct spex_config {
    int vocab_size;
    int hidden_size;
    int intermediate_size;       /* dense FFN */
    int moe_intermediate_size;   /* each routed / shared expert */
    int num_hidden_layers;       /* main model layers; MTP layers follow at index num_hidden_layers */
    int num_attention_heads;
    int q_lora_rank;             /* 0 when config says null: plain q_proj */
    int kv_lora_rank;
    int qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int n_routed_experts, n_shared_experts, num_experts_per_tok;
    int n_group, topk_group;
    double routed_scaling_factor;
    bool norm_topk_prob;
    spex_scoring_t scoring_func;
    spex_topk_method_t topk_method;
    int first_k_dense_replace, moe_layer_freq;
    int num_nextn_predict_layers;
    double rope_theta;
    spex_rope_scaling_t rope_scaling;
    double rms_norm_eps;
    int max_position_embeddings;
    int bos_token_id, eos_token_id;   /* -1 when absent */
    bool tie_word_embeddings;
    int fp8_block[2];                 /* quantization_config.weight_block_size, {0,0} if none */
} spex_config_t;

/* Parse config.json at `path`. Errors name the file and the field. */
int config_load(spex_config_t *cfg, const char *path, spex_err_t *err);

/* Parse from a JSON text already in memory (`origin` names it in errors). */
int config_parse(spex_config_t *cfg, const char *json, const char *origin, spex_err_t *err);

/* True when decoder layer `layer` (0-based; MTP layers count too) has a MoE FFN. */
bool config_layer_is_moe(const spex_config_t *cfg, int layer);

/* Derived sizes. */
static inline int config_qk_head_dim(const spex_config_t *c) { return c->qk_nope_head_dim + c->qk_rope_head_dim; }

#endif
