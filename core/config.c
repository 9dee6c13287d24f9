/* config.c - see config.h: parse and validate a DeepSeek-V3 config.json.
 *
 * Defaults for absent keys. Keys that fix tensor shapes are required (Hugging
 * Face would silently substitute the 671B model's values, which then mismatch
 * every tensor). Behavioural keys take the defaults of DeepSeek-V3's
 * configuration_deepseek.py, except where that default only describes the 671B
 * layout and would be wrong or invalid for another model:
 *
 *   key                        default   note
 *   q_lora_rank                0         null or absent: plain q_proj
 *   n_routed_experts           0         absent: dense model (as DeepSeek-V2's None)
 *   num_experts_per_tok        -         required when n_routed_experts > 0
 *   moe_intermediate_size      -         required when n_routed_experts > 0
 *   intermediate_size          -         required when some layer is dense
 *   n_shared_experts           1         HF V3 default
 *   n_group, topk_group        1, 1      HF V3 says 8, 4 (valid only for 256 experts)
 *   first_k_dense_replace      0         HF V3 says 3 (the 671B layout)
 *   moe_layer_freq             1
 *   num_nextn_predict_layers   0         HF V3 says 1; MTP weights exist only when stated
 *   routed_scaling_factor      2.5       HF V3 default
 *   norm_topk_prob             true      HF V3 default (V2's was false)
 *   scoring_func               sigmoid
 *   topk_method                noaux_tc
 *   rope_theta                 10000
 *   rope_scaling               none      yarn sub-keys default as DeepSeek's YaRN class:
 *                                        original_max_position_embeddings 4096, beta_fast 32,
 *                                        beta_slow 1, mscale 1, mscale_all_dim 0; factor required
 *   rms_norm_eps               1e-6
 *   max_position_embeddings    4096
 *   bos_token_id, eos_token_id -1        absent (config.h)
 *   tie_word_embeddings        false
 *   quantization_config        none      weight_block_size defaults to [128, 128] if the
 *                                        section is present without it
 * A JSON null counts as absent. */
#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

/* Parsing context: where errors point. */
typedef struct {
    const char *origin;   /* file name or caller's label */
    const char *section;  /* "" or "rope_scaling." etc. for nested keys */
    spex_err_t *err;
} jctx_t;

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "string";
    if (cJSON_IsNumber(v)) return "number";
    if (cJSON_IsBool(v)) return "bool";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "array";
    if (cJSON_IsObject(v)) return "object";
    return "invalid";
}

static int field_fail(const jctx_t *c, const char *key, const char *what) {
    return spex_fail(c->err, "%s: field '%s%s': %s", c->origin, c->section, key, what);
}

static int type_fail(const jctx_t *c, const char *key, const char *want, const cJSON *got) {
    char msg[128];
    snprintf(msg, sizeof msg, "expected %s, got %s", want, json_type_name(got));
    return field_fail(c, key, msg);
}

/* Item for key, or NULL when absent or null. */
static const cJSON *item(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

/* Integer field. `required` makes absence an error; otherwise *out = def. */
static int get_int(const jctx_t *c, const cJSON *obj, const char *key, bool required, int def, int *out) {
    const cJSON *v = item(obj, key);
    if (!v) {
        if (required) return field_fail(c, key, "missing (required)");
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v)) return type_fail(c, key, "a number", v);
    double d = v->valuedouble;
    if (d != floor(d) || !isfinite(d)) {
        char msg[96];
        snprintf(msg, sizeof msg, "expected an integer, got %g", d);
        return field_fail(c, key, msg);
    }
    if (d < -2147483648.0 || d > 2147483647.0) return field_fail(c, key, "integer out of range");
    *out = (int)d;
    return 0;
}

static int get_double(const jctx_t *c, const cJSON *obj, const char *key, bool required, double def,
                      double *out) {
    const cJSON *v = item(obj, key);
    if (!v) {
        if (required) return field_fail(c, key, "missing (required)");
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v)) return type_fail(c, key, "a number", v);
    *out = v->valuedouble;
    return 0;
}

static int get_bool(const jctx_t *c, const cJSON *obj, const char *key, bool def, bool *out) {
    const cJSON *v = item(obj, key);
    if (!v) { *out = def; return 0; }
    if (!cJSON_IsBool(v)) return type_fail(c, key, "a bool", v);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* String field mapped onto one of `names` (index returned in *out). */
static int get_enum(const jctx_t *c, const cJSON *obj, const char *key, const char *const *names, int n,
                    int def, int *out) {
    const cJSON *v = item(obj, key);
    if (!v) { *out = def; return 0; }
    if (!cJSON_IsString(v)) return type_fail(c, key, "a string", v);
    for (int i = 0; i < n; i++)
        if (!strcmp(v->valuestring, names[i])) { *out = i; return 0; }
    char msg[256];
    int len = snprintf(msg, sizeof msg, "unsupported value '%.64s' (expected", v->valuestring);
    for (int i = 0; i < n && len > 0 && (size_t)len < sizeof msg; i++)
        len += snprintf(msg + len, sizeof msg - (size_t)len, "%s '%s'", i ? " or" : "", names[i]);
    if (len > 0 && (size_t)len < sizeof msg) snprintf(msg + len, sizeof msg - (size_t)len, ")");
    return field_fail(c, key, msg);
}

/* rope_scaling: null/absent = plain RoPE; otherwise must be YaRN. */
static int parse_rope_scaling(const jctx_t *c, const cJSON *root, spex_rope_scaling_t *rs) {
    memset(rs, 0, sizeof *rs);
    const cJSON *v = item(root, "rope_scaling");
    if (!v) return 0;
    if (!cJSON_IsObject(v)) return type_fail(c, "rope_scaling", "an object or null", v);
    jctx_t sub = {c->origin, "rope_scaling.", c->err};
    const cJSON *type = item(v, "type");
    const char *type_key = "type";
    if (!type) { type = item(v, "rope_type"); type_key = "rope_type"; }
    if (!type) return field_fail(&sub, "type", "missing (required: \"yarn\")");
    if (!cJSON_IsString(type)) return type_fail(&sub, type_key, "a string", type);
    if (strcmp(type->valuestring, "yarn") != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "unsupported RoPE scaling '%.64s' (only \"yarn\")", type->valuestring);
        return field_fail(&sub, type_key, msg);
    }
    rs->yarn = true;
    if (get_double(&sub, v, "factor", true, 1.0, &rs->factor) ||
        get_int(&sub, v, "original_max_position_embeddings", false, 4096, &rs->original_max_position_embeddings) ||
        get_double(&sub, v, "beta_fast", false, 32.0, &rs->beta_fast) ||
        get_double(&sub, v, "beta_slow", false, 1.0, &rs->beta_slow) ||
        get_double(&sub, v, "mscale", false, 1.0, &rs->mscale) ||
        get_double(&sub, v, "mscale_all_dim", false, 0.0, &rs->mscale_all_dim))
        return -1;
    if (!(rs->factor > 0)) return field_fail(&sub, "factor", "must be > 0");
    if (rs->original_max_position_embeddings <= 0)
        return field_fail(&sub, "original_max_position_embeddings", "must be > 0");
    return 0;
}

/* quantization_config.weight_block_size -> fp8_block ({0,0} when not quantised). */
static int parse_quant(const jctx_t *c, const cJSON *root, int block[2]) {
    block[0] = block[1] = 0;
    const cJSON *q = item(root, "quantization_config");
    if (!q) return 0;
    if (!cJSON_IsObject(q)) return type_fail(c, "quantization_config", "an object", q);
    jctx_t sub = {c->origin, "quantization_config.", c->err};
    const cJSON *b = item(q, "weight_block_size");
    if (!b) { block[0] = block[1] = 128; return 0; }
    if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) != 2)
        return type_fail(&sub, "weight_block_size", "an array of 2 integers", b);
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetArrayItem(b, i);
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 1 ||
            e->valuedouble > 1 << 20)
            return field_fail(&sub, "weight_block_size", "expected 2 positive integers");
        block[i] = (int)e->valuedouble;
    }
    return 0;
}

/* Does any main or MTP layer use the dense FFN (so intermediate_size is needed)?
 * Asked before the values are validated, so in closed form over 64 bits: the
 * sum overflowed an int for INT_MAX layers plus an MTP layer (UBSan), and a
 * loop over 2e9 layers spun for seconds before the cap refused them (issue 16
 * item 7). Layer l is MoE iff experts exist, l >= first_k_dense_replace and
 * l % moe_layer_freq == 0 (config_layer_is_moe); a bad freq is refused later. */
static bool any_dense_layer(const spex_config_t *cfg) {
    long long n = (long long)cfg->num_hidden_layers + cfg->num_nextn_predict_layers;
    if (n <= 0 || cfg->moe_layer_freq <= 0) return false;
    if (cfg->n_routed_experts <= 0 || cfg->first_k_dense_replace > 0) return true;   /* layer 0 is dense */
    return cfg->moe_layer_freq > 1 && n >= 2;                                        /* layer 1 is dense */
}

static int parse_dims(const jctx_t *c, const cJSON *r, spex_config_t *cfg) {
    return get_int(c, r, "vocab_size", true, 0, &cfg->vocab_size) ||
           get_int(c, r, "hidden_size", true, 0, &cfg->hidden_size) ||
           get_int(c, r, "num_hidden_layers", true, 0, &cfg->num_hidden_layers) ||
           get_int(c, r, "num_attention_heads", true, 0, &cfg->num_attention_heads) ||
           get_int(c, r, "q_lora_rank", false, 0, &cfg->q_lora_rank) ||
           get_int(c, r, "kv_lora_rank", true, 0, &cfg->kv_lora_rank) ||
           get_int(c, r, "qk_nope_head_dim", true, 0, &cfg->qk_nope_head_dim) ||
           get_int(c, r, "qk_rope_head_dim", true, 0, &cfg->qk_rope_head_dim) ||
           get_int(c, r, "v_head_dim", true, 0, &cfg->v_head_dim) ||
           get_int(c, r, "num_nextn_predict_layers", false, 0, &cfg->num_nextn_predict_layers) ||
           get_int(c, r, "first_k_dense_replace", false, 0, &cfg->first_k_dense_replace) ||
           get_int(c, r, "moe_layer_freq", false, 1, &cfg->moe_layer_freq) ||
           get_int(c, r, "n_routed_experts", false, 0, &cfg->n_routed_experts);
}

static int parse_moe(const jctx_t *c, const cJSON *r, spex_config_t *cfg) {
    static const char *const SCORING[] = {"sigmoid", "softmax"};
    static const char *const TOPK[] = {"noaux_tc", "greedy", "group_limited_greedy"};
    bool moe = cfg->n_routed_experts > 0;
    int scoring = 0, topk = 0;
    if (get_int(c, r, "moe_intermediate_size", moe, 0, &cfg->moe_intermediate_size) ||
        get_int(c, r, "num_experts_per_tok", moe, 0, &cfg->num_experts_per_tok) ||
        get_int(c, r, "n_shared_experts", false, 1, &cfg->n_shared_experts) ||
        get_int(c, r, "n_group", false, 1, &cfg->n_group) ||
        get_int(c, r, "topk_group", false, 1, &cfg->topk_group) ||
        get_double(c, r, "routed_scaling_factor", false, 2.5, &cfg->routed_scaling_factor) ||
        get_bool(c, r, "norm_topk_prob", true, &cfg->norm_topk_prob) ||
        get_enum(c, r, "scoring_func", SCORING, 2, 0, &scoring) ||
        get_enum(c, r, "topk_method", TOPK, 3, 0, &topk))
        return -1;
    cfg->scoring_func = (spex_scoring_t)scoring;
    cfg->topk_method = (spex_topk_method_t)topk;
    return 0;
}

static int parse_misc(const jctx_t *c, const cJSON *r, spex_config_t *cfg) {
    return get_double(c, r, "rope_theta", false, 10000.0, &cfg->rope_theta) ||
           get_double(c, r, "rms_norm_eps", false, 1e-6, &cfg->rms_norm_eps) ||
           get_int(c, r, "max_position_embeddings", false, 4096, &cfg->max_position_embeddings) ||
           get_int(c, r, "bos_token_id", false, -1, &cfg->bos_token_id) ||
           get_int(c, r, "eos_token_id", false, -1, &cfg->eos_token_id) ||
           get_bool(c, r, "tie_word_embeddings", false, &cfg->tie_word_embeddings) ||
           parse_rope_scaling(c, r, &cfg->rope_scaling) || parse_quant(c, r, cfg->fp8_block);
}

/* Upper bounds, far above any published DeepSeek-V3-family model (61 layers,
 * 128 heads, hidden 7168, 256 experts, 163840 positions) but low enough that
 * every shape dimension (a product of at most two of these) fits an int and a
 * corrupt value is reported here instead of as an allocation of terabytes. */
static int validate_caps(const jctx_t *c, const spex_config_t *cfg) {
    const struct { const char *key; int v, max; } caps[] = {
        {"vocab_size", cfg->vocab_size, 1 << 22}, {"hidden_size", cfg->hidden_size, 1 << 16},
        {"num_hidden_layers", cfg->num_hidden_layers, 1024}, {"num_attention_heads", cfg->num_attention_heads, 1024},
        {"q_lora_rank", cfg->q_lora_rank, 1 << 16}, {"kv_lora_rank", cfg->kv_lora_rank, 1 << 16},
        {"qk_nope_head_dim", cfg->qk_nope_head_dim, 4096}, {"qk_rope_head_dim", cfg->qk_rope_head_dim, 4096},
        {"v_head_dim", cfg->v_head_dim, 4096}, {"intermediate_size", cfg->intermediate_size, 1 << 20},
        {"moe_intermediate_size", cfg->moe_intermediate_size, 1 << 20}, {"n_routed_experts", cfg->n_routed_experts, 1 << 16},
        {"n_shared_experts", cfg->n_shared_experts, 64}, {"num_nextn_predict_layers", cfg->num_nextn_predict_layers, 64},
        {"moe_layer_freq", cfg->moe_layer_freq, 1024}, {"max_position_embeddings", cfg->max_position_embeddings, 1 << 22},
    };
    char msg[96];
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        if (caps[i].v > caps[i].max) {
            snprintf(msg, sizeof msg, "%d is beyond the supported maximum %d", caps[i].v, caps[i].max);
            return field_fail(c, caps[i].key, msg);
        }
    return 0;
}

static int validate_dims(const jctx_t *c, const spex_config_t *cfg) {
    const struct { const char *key; int v; } positive[] = {
        {"vocab_size", cfg->vocab_size}, {"hidden_size", cfg->hidden_size},
        {"num_hidden_layers", cfg->num_hidden_layers}, {"num_attention_heads", cfg->num_attention_heads},
        {"kv_lora_rank", cfg->kv_lora_rank}, {"qk_nope_head_dim", cfg->qk_nope_head_dim},
        {"qk_rope_head_dim", cfg->qk_rope_head_dim}, {"v_head_dim", cfg->v_head_dim},
        {"moe_layer_freq", cfg->moe_layer_freq}, {"max_position_embeddings", cfg->max_position_embeddings},
    };
    for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++)
        if (positive[i].v <= 0) return field_fail(c, positive[i].key, "must be > 0");
    const struct { const char *key; int v; } nonneg[] = {
        {"q_lora_rank", cfg->q_lora_rank}, {"num_nextn_predict_layers", cfg->num_nextn_predict_layers},
        {"first_k_dense_replace", cfg->first_k_dense_replace}, {"n_routed_experts", cfg->n_routed_experts},
        {"n_shared_experts", cfg->n_shared_experts},
    };
    for (size_t i = 0; i < sizeof nonneg / sizeof nonneg[0]; i++)
        if (nonneg[i].v < 0) return field_fail(c, nonneg[i].key, "must be >= 0");
    if (validate_caps(c, cfg)) return -1;
    if (cfg->qk_rope_head_dim % 2) return field_fail(c, "qk_rope_head_dim", "must be even (RoPE rotates pairs)");
    if (any_dense_layer(cfg) && cfg->intermediate_size <= 0)
        return field_fail(c, "intermediate_size", "must be > 0 (the model has dense FFN layers)");
    return 0;
}

static int validate_moe(const jctx_t *c, const spex_config_t *cfg) {
    char msg[192];
    if (cfg->n_routed_experts == 0) return 0;
    if (cfg->moe_intermediate_size <= 0) return field_fail(c, "moe_intermediate_size", "must be > 0");
    if (cfg->n_group <= 0) return field_fail(c, "n_group", "must be > 0");
    if (cfg->n_routed_experts % cfg->n_group) {
        snprintf(msg, sizeof msg, "n_routed_experts (%d) must be a multiple of n_group (%d)",
                 cfg->n_routed_experts, cfg->n_group);
        return field_fail(c, "n_group", msg);
    }
    if (cfg->topk_group <= 0 || cfg->topk_group > cfg->n_group) {
        snprintf(msg, sizeof msg, "must be in 1..n_group (%d), got %d", cfg->n_group, cfg->topk_group);
        return field_fail(c, "topk_group", msg);
    }
    if (cfg->num_experts_per_tok <= 0 || cfg->num_experts_per_tok > cfg->n_routed_experts) {
        snprintf(msg, sizeof msg, "must be in 1..n_routed_experts (%d), got %d", cfg->n_routed_experts,
                 cfg->num_experts_per_tok);
        return field_fail(c, "num_experts_per_tok", msg);
    }
    int reachable = cfg->topk_group * (cfg->n_routed_experts / cfg->n_group);
    if (cfg->num_experts_per_tok > reachable) {
        snprintf(msg, sizeof msg, "%d experts per token but topk_group %d groups hold only %d",
                 cfg->num_experts_per_tok, cfg->topk_group, reachable);
        return field_fail(c, "num_experts_per_tok", msg);
    }
    if (!(cfg->routed_scaling_factor > 0)) return field_fail(c, "routed_scaling_factor", "must be > 0");
    return 0;
}

static int validate_misc(const jctx_t *c, const spex_config_t *cfg) {
    if (!(cfg->rms_norm_eps > 0)) return field_fail(c, "rms_norm_eps", "must be > 0");
    if (!(cfg->rope_theta > 0)) return field_fail(c, "rope_theta", "must be > 0");
    if (cfg->bos_token_id >= cfg->vocab_size) return field_fail(c, "bos_token_id", "must be < vocab_size");
    if (cfg->eos_token_id >= cfg->vocab_size) return field_fail(c, "eos_token_id", "must be < vocab_size");
    return 0;
}

/* "line L, column C" of byte offset `pos` in `text`. */
static void text_position(const char *text, size_t pos, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < pos && text[i]; i++) {
        if (text[i] == '\n') { (*line)++; *col = 1; }
        else (*col)++;
    }
}

int config_parse(spex_config_t *cfg, const char *json, const char *origin, spex_err_t *err) {
    memset(cfg, 0, sizeof *cfg);
    const char *end = NULL;
    size_t len = strlen(json);
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t pos = end && end >= json ? (size_t)(end - json) : 0;
        int line, col;
        text_position(json, pos, &line, &col);
        return spex_fail(err, "%s: invalid JSON at line %d, column %d (byte %zu): near '%.20s'", origin, line,
                         col, pos, json + (pos < len ? pos : len));
    }
    jctx_t c = {origin, "", err};
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        spex_fail(err, "%s: expected a JSON object at the top level, got %s", origin, json_type_name(root));
        goto done;
    }
    if (parse_dims(&c, root, cfg) || parse_moe(&c, root, cfg) || parse_misc(&c, root, cfg)) goto done;
    /* intermediate_size is only needed when a dense layer exists; check after the layout keys. */
    if (get_int(&c, root, "intermediate_size", any_dense_layer(cfg), 0, &cfg->intermediate_size)) goto done;
    if (validate_dims(&c, cfg) || validate_moe(&c, cfg) || validate_misc(&c, cfg)) goto done;
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

int config_load(spex_config_t *cfg, const char *path, spex_err_t *err) {
    size_t len;
    char *buf = spex_read_file(path, 64u << 20, &len, err);
    if (!buf) return spex_err_prefix(err, "%s: ", path);
    int rc = strlen(buf) != len ? spex_fail(err, "%s: config contains a NUL byte", path)
                                : config_parse(cfg, buf, path, err);
    free(buf);
    return rc;
}

bool config_layer_is_moe(const spex_config_t *cfg, int layer) {
    return cfg->n_routed_experts > 0 && layer >= cfg->first_k_dense_replace &&
           layer % cfg->moe_layer_freq == 0;
}
