/* cmd_inspect.c - `spex inspect --model DIR [--json]`: a checkpoint's config,
 * files, tensor count, parameter counts (total, main vs MTP, routed experts,
 * active per token) and bytes by dtype, after checking that every tensor the
 * architecture needs is present with the right shape (core/model_check.h).
 * A bad model is exit 1 with a message naming the file and tensor. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_opts.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "core/checkpoint.h"
#include "core/config.h"
#include "core/model_check.h"
#include "core/safetensors.h"

#define ACTIVE_NOTE                                                                                    \
    "active per token = main-model parameters except routed experts (embedding, attention, dense and " \
    "shared FFN, router, norms, lm_head) + num_experts_per_tok routed experts per MoE layer; MTP excluded"

typedef struct stats {
    uint64_t total, main, mtp, routed_main, routed_mtp, active, scale_elems;
    uint64_t bytes[DTYPE_COUNT];
    size_t tensors[DTYPE_COUNT];
    int moe_layers;
} stats_t;

/* Decoder layer of a tensor name, -1 for global tensors. */
static int name_layer(const char *name) {
    if (strncmp(name, "model.layers.", 13) != 0) return -1;
    return atoi(name + 13);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Parameter counts by tensor name. FP8 *_scale_inv tensors are counted apart. */
static int compute_stats(const spex_config_t *cfg, const tensor_store_t *ts, stats_t *s) {
    memset(s, 0, sizeof *s);
    int layers = cfg->num_hidden_layers + cfg->num_nextn_predict_layers;
    uint64_t *routed_layer = calloc((size_t)layers + 1, sizeof *routed_layer);
    if (!routed_layer) return -1;
    for (size_t i = 0; i < tensor_store_count(ts); i++) {
        const st_tensor_t *t = tensor_store_at(ts, i);
        s->bytes[t->dtype] += t->nbytes;
        s->tensors[t->dtype]++;
        if (ends_with(t->name, "_scale_inv")) { s->scale_elems += (uint64_t)t->numel; continue; }
        uint64_t n = (uint64_t)t->numel;
        int L = name_layer(t->name);
        bool mtp = L >= cfg->num_hidden_layers, routed = strstr(t->name, ".mlp.experts.") != NULL;
        s->total += n;
        if (mtp) s->mtp += n;
        else s->main += n;
        if (routed && mtp) s->routed_mtp += n;
        if (routed && !mtp) s->routed_main += n;
        if (routed && L >= 0 && L < layers) routed_layer[L] += n;
    }
    s->active = s->main - s->routed_main;
    for (int L = 0; L < cfg->num_hidden_layers; L++)
        if (config_layer_is_moe(cfg, L) && cfg->n_routed_experts > 0) {
            s->moe_layers++;
            s->active += routed_layer[L] / (uint64_t)cfg->n_routed_experts * (uint64_t)cfg->num_experts_per_tok;
        }
    free(routed_layer);
    return 0;
}

static const char *yes_no(bool b) { return b ? "true" : "false"; }

static void print_config_text(const spex_config_t *c) {
    static const char *const SCORING[] = {"sigmoid", "softmax"};
    static const char *const TOPK[] = {"noaux_tc", "greedy", "group_limited_greedy"};
    printf("config:\n");
    printf("  vocab %d, hidden %d, layers %d (+%d MTP), dense layers %d, moe_layer_freq %d\n", c->vocab_size,
           c->hidden_size, c->num_hidden_layers, c->num_nextn_predict_layers, c->first_k_dense_replace,
           c->moe_layer_freq);
    printf("  attention: %d heads, q_lora_rank %d%s, kv_lora_rank %d, qk_nope %d, qk_rope %d, v_head %d\n",
           c->num_attention_heads, c->q_lora_rank, c->q_lora_rank ? "" : " (plain q_proj)", c->kv_lora_rank,
           c->qk_nope_head_dim, c->qk_rope_head_dim, c->v_head_dim);
    printf("  ffn: intermediate %d; experts %d routed + %d shared of %d, %d per token, %d groups (top %d)\n",
           c->intermediate_size, c->n_routed_experts, c->n_shared_experts, c->moe_intermediate_size,
           c->num_experts_per_tok, c->n_group, c->topk_group);
    printf("  router: %s, %s, routed_scaling_factor %g, norm_topk_prob %s\n", SCORING[c->scoring_func],
           TOPK[c->topk_method], c->routed_scaling_factor, yes_no(c->norm_topk_prob));
    printf("  rope_theta %g, ", c->rope_theta);
    if (c->rope_scaling.yarn)
        printf("yarn factor %g (original %d, beta %g/%g, mscale %g/%g), ", c->rope_scaling.factor,
               c->rope_scaling.original_max_position_embeddings, c->rope_scaling.beta_fast, c->rope_scaling.beta_slow,
               c->rope_scaling.mscale, c->rope_scaling.mscale_all_dim);
    printf("max_position %d, rms_norm_eps %g\n", c->max_position_embeddings, c->rms_norm_eps);
    printf("  bos %d, eos %d, tie_word_embeddings %s, fp8 block ", c->bos_token_id, c->eos_token_id,
           yes_no(c->tie_word_embeddings));
    if (c->fp8_block[0]) printf("%dx%d\n", c->fp8_block[0], c->fp8_block[1]);
    else printf("none\n");
}

static void print_text(const char *dir, const spex_config_t *c, const tensor_store_t *ts, const stats_t *s,
                       size_t unexpected, const char *first_unexpected) {
    printf("model: %s\n", dir);
    print_config_text(c);
    printf("files: %d\n", tensor_store_file_count(ts));
    for (int i = 0; i < tensor_store_file_count(ts); i++)
        printf("  %-48s %14llu bytes\n", tensor_store_file_path(ts, i),
               (unsigned long long)tensor_store_file_size(ts, i));
    printf("tensors: %zu (every tensor the architecture needs is present with the right shape", tensor_store_count(ts));
    if (unexpected) printf("; %zu unused, e.g. '%s'", unexpected, first_unexpected);
    printf(")\n");
    printf("parameters (elements of weight tensors; %llu FP8 scale_inv elements not counted):\n",
           (unsigned long long)s->scale_elems);
    printf("  total             %14llu\n", (unsigned long long)s->total);
    printf("  main model        %14llu\n", (unsigned long long)s->main);
    printf("  MTP               %14llu\n", (unsigned long long)s->mtp);
    printf("  routed experts    %14llu  (main %llu, MTP %llu)\n", (unsigned long long)(s->routed_main + s->routed_mtp),
           (unsigned long long)s->routed_main, (unsigned long long)s->routed_mtp);
    printf("  active per token  %14llu  (%d MoE layers)\n", (unsigned long long)s->active, s->moe_layers);
    printf("  note: %s\n", ACTIVE_NOTE);
    printf("bytes by dtype:\n");
    for (int d = 0; d < DTYPE_COUNT; d++)
        if (s->tensors[d])
            printf("  %-8s %14llu bytes in %zu tensors\n", dtype_name((spex_dtype_t)d),
                   (unsigned long long)s->bytes[d], s->tensors[d]);
}

static cJSON *config_json(const spex_config_t *c) {
    static const char *const SCORING[] = {"sigmoid", "softmax"};
    static const char *const TOPK[] = {"noaux_tc", "greedy", "group_limited_greedy"};
    cJSON *j = cJSON_CreateObject();
    const struct { const char *k; int v; } ints[] = {
        {"vocab_size", c->vocab_size}, {"hidden_size", c->hidden_size},
        {"intermediate_size", c->intermediate_size}, {"moe_intermediate_size", c->moe_intermediate_size},
        {"num_hidden_layers", c->num_hidden_layers}, {"num_nextn_predict_layers", c->num_nextn_predict_layers},
        {"num_attention_heads", c->num_attention_heads}, {"q_lora_rank", c->q_lora_rank},
        {"kv_lora_rank", c->kv_lora_rank}, {"qk_nope_head_dim", c->qk_nope_head_dim},
        {"qk_rope_head_dim", c->qk_rope_head_dim}, {"v_head_dim", c->v_head_dim},
        {"n_routed_experts", c->n_routed_experts}, {"n_shared_experts", c->n_shared_experts},
        {"num_experts_per_tok", c->num_experts_per_tok}, {"n_group", c->n_group}, {"topk_group", c->topk_group},
        {"first_k_dense_replace", c->first_k_dense_replace}, {"moe_layer_freq", c->moe_layer_freq},
        {"max_position_embeddings", c->max_position_embeddings}, {"bos_token_id", c->bos_token_id},
        {"eos_token_id", c->eos_token_id},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) cJSON_AddNumberToObject(j, ints[i].k, ints[i].v);
    cJSON_AddNumberToObject(j, "routed_scaling_factor", c->routed_scaling_factor);
    cJSON_AddBoolToObject(j, "norm_topk_prob", c->norm_topk_prob);
    cJSON_AddStringToObject(j, "scoring_func", SCORING[c->scoring_func]);
    cJSON_AddStringToObject(j, "topk_method", TOPK[c->topk_method]);
    cJSON_AddNumberToObject(j, "rope_theta", c->rope_theta);
    cJSON_AddNumberToObject(j, "rms_norm_eps", c->rms_norm_eps);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_word_embeddings);
    if (c->rope_scaling.yarn) {
        const spex_rope_scaling_t *y = &c->rope_scaling;
        cJSON *r = cJSON_AddObjectToObject(j, "rope_scaling");
        cJSON_AddStringToObject(r, "type", "yarn");
        cJSON_AddNumberToObject(r, "factor", y->factor);
        cJSON_AddNumberToObject(r, "original_max_position_embeddings", y->original_max_position_embeddings);
        cJSON_AddNumberToObject(r, "beta_fast", y->beta_fast);
        cJSON_AddNumberToObject(r, "beta_slow", y->beta_slow);
        cJSON_AddNumberToObject(r, "mscale", y->mscale);
        cJSON_AddNumberToObject(r, "mscale_all_dim", y->mscale_all_dim);
    } else {
        cJSON_AddNullToObject(j, "rope_scaling");
    }
    if (c->fp8_block[0]) cJSON_AddItemToObject(j, "fp8_block", cJSON_CreateIntArray(c->fp8_block, 2));
    else cJSON_AddNullToObject(j, "fp8_block");
    return j;
}

static void print_json(const char *dir, const spex_config_t *c, const tensor_store_t *ts, const stats_t *s,
                       size_t unexpected) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", dir);
    cJSON_AddItemToObject(j, "config", config_json(c));
    cJSON *files = cJSON_AddArrayToObject(j, "files");
    for (int i = 0; i < tensor_store_file_count(ts); i++) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "path", tensor_store_file_path(ts, i));
        cJSON_AddNumberToObject(f, "bytes", (double)tensor_store_file_size(ts, i));
        cJSON_AddItemToArray(files, f);
    }
    cJSON_AddNumberToObject(j, "tensors", (double)tensor_store_count(ts));
    cJSON_AddNumberToObject(j, "unused_tensors", (double)unexpected);
    cJSON_AddStringToObject(j, "check", "ok");
    cJSON *p = cJSON_AddObjectToObject(j, "parameters");
    cJSON_AddNumberToObject(p, "total", (double)s->total);
    cJSON_AddNumberToObject(p, "main", (double)s->main);
    cJSON_AddNumberToObject(p, "mtp", (double)s->mtp);
    cJSON_AddNumberToObject(p, "routed_experts", (double)(s->routed_main + s->routed_mtp));
    cJSON_AddNumberToObject(p, "routed_experts_main", (double)s->routed_main);
    cJSON_AddNumberToObject(p, "routed_experts_mtp", (double)s->routed_mtp);
    cJSON_AddNumberToObject(p, "active_per_token", (double)s->active);
    cJSON_AddNumberToObject(p, "moe_layers", s->moe_layers);
    cJSON_AddNumberToObject(p, "scale_inv_elements", (double)s->scale_elems);
    cJSON_AddStringToObject(p, "note", ACTIVE_NOTE);
    cJSON *b = cJSON_AddObjectToObject(j, "bytes_by_dtype");
    for (int d = 0; d < DTYPE_COUNT; d++)
        if (s->tensors[d]) cJSON_AddNumberToObject(b, dtype_name((spex_dtype_t)d), (double)s->bytes[d]);
    char *text = cJSON_Print(j);
    if (text) puts(text);
    free(text);
    cJSON_Delete(j);
}

/* Load config + tensors and check them; prints the error and returns 1 on failure. */
static int open_model(const char *dir, spex_config_t *cfg, tensor_store_t **ts) {
    spex_err_t err = {0};
    if (!(*ts = checkpoint_open(dir, cfg, &err))) { cli_error("inspect", "%s", err.msg); return 1; }
    if (model_check_tensors(cfg, *ts, &err)) {
        cli_error("inspect", "%s", err.msg);
        tensor_store_free(*ts);
        *ts = NULL;
        return 1;
    }
    return 0;
}

typedef struct inspect_cli {
    const char *dir;
    bool json;
} inspect_cli_t;

static const cli_option_t INSPECT_OPTIONS[] = {
    CLI_OPT_FLAG("--json", inspect_cli_t, json, "print the report as JSON"),
};

int cmd_inspect(int argc, char **argv) {
    inspect_cli_t c = {0};
    cli_group_t groups[] = {cli_model_group(&c.dir), CLI_GROUP(NULL, INSPECT_OPTIONS, &c)};
    cli_spec_t spec = CLI_SPEC("inspect", "inspect --model DIR [--json]", NULL, groups);
    int prc = cli_run_parse(&spec, argc, argv, 1);
    if (prc >= 0) return prc;
    const char *dir = c.dir;
    spex_config_t cfg;
    tensor_store_t *ts = NULL;
    if (open_model(dir, &cfg, &ts)) return 1;
    stats_t s;
    char first[256];
    size_t unexpected = model_count_unexpected(&cfg, ts, first, sizeof first);
    int rc = 0;
    if (compute_stats(&cfg, ts, &s)) { cli_error("inspect", "out of memory"); rc = 1; }
    else if (c.json) print_json(dir, &cfg, ts, &s, unexpected);
    else print_text(dir, &cfg, ts, &s, unexpected, first);
    tensor_store_free(ts);
    return rc;
}
