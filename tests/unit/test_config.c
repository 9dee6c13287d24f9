/* test_config.c - config.json parsing: the three golden configs, defaults for
 * absent keys, and errors that name the field (wrong types, bad values, bad
 * JSON with its position). Variants are made by editing a golden config with
 * cJSON and re-printing it. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "testutil.h"

static void load_golden(spex_config_t *cfg, const char *fixture) {
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "golden/%s/config.json", fixture);
    spex_err_t err = {0};
    cr_assert_eq(config_load(cfg, test_data_path(path, sizeof path, rel), &err), 0, "%s: %s", fixture, err.msg);
}

Test(config, golden_f32) {
    spex_config_t c;
    load_golden(&c, "tiny-f32");
    cr_assert_eq(c.vocab_size, 320);
    cr_assert_eq(c.hidden_size, 128);
    cr_assert_eq(c.intermediate_size, 288);
    cr_assert_eq(c.moe_intermediate_size, 96);
    cr_assert_eq(c.num_hidden_layers, 3);
    cr_assert_eq(c.num_attention_heads, 4);
    cr_assert_eq(c.q_lora_rank, 96);
    cr_assert_eq(c.kv_lora_rank, 64);
    cr_assert_eq(c.qk_nope_head_dim, 32);
    cr_assert_eq(c.qk_rope_head_dim, 16);
    cr_assert_eq(c.v_head_dim, 24);
    cr_assert_eq(config_qk_head_dim(&c), 48);
    cr_assert_eq(c.n_routed_experts, 16);
    cr_assert_eq(c.n_shared_experts, 1);
    cr_assert_eq(c.num_experts_per_tok, 4);
    cr_assert_eq(c.n_group, 4);
    cr_assert_eq(c.topk_group, 2);
    cr_assert_float_eq(c.routed_scaling_factor, 2.5, 1e-12);
    cr_assert(c.norm_topk_prob);
    cr_assert_eq(c.scoring_func, SCORING_SIGMOID);
    cr_assert_eq(c.topk_method, TOPK_NOAUX_TC);
    cr_assert_eq(c.first_k_dense_replace, 1);
    cr_assert_eq(c.moe_layer_freq, 1);
    cr_assert_eq(c.num_nextn_predict_layers, 1);
    cr_assert_float_eq(c.rope_theta, 10000.0, 1e-9);
    cr_assert(c.rope_scaling.yarn);
    cr_assert_float_eq(c.rope_scaling.factor, 40.0, 1e-12);
    cr_assert_eq(c.rope_scaling.original_max_position_embeddings, 64);
    cr_assert_float_eq(c.rope_scaling.beta_fast, 32.0, 1e-12);
    cr_assert_float_eq(c.rope_scaling.beta_slow, 1.0, 1e-12);
    cr_assert_float_eq(c.rope_scaling.mscale, 1.0, 1e-12);
    cr_assert_float_eq(c.rope_scaling.mscale_all_dim, 1.0, 1e-12);
    cr_assert_float_eq(c.rms_norm_eps, 1e-6, 1e-18);
    cr_assert_eq(c.max_position_embeddings, 256);
    cr_assert_eq(c.bos_token_id, 0);
    cr_assert_eq(c.eos_token_id, 1);
    cr_assert(!c.tie_word_embeddings);
    cr_assert_eq(c.fp8_block[0], 0);
    cr_assert_eq(c.fp8_block[1], 0);
    cr_assert(!config_layer_is_moe(&c, 0));
    cr_assert(config_layer_is_moe(&c, 1));
    cr_assert(config_layer_is_moe(&c, 2));
    cr_assert(config_layer_is_moe(&c, 3), "the MTP layer is MoE");
}

Test(config, golden_bf16_noq_and_fp8) {
    spex_config_t c;
    load_golden(&c, "tiny-bf16-noq");
    cr_assert_eq(c.q_lora_rank, 0, "q_lora_rank null -> 0");
    cr_assert_eq(c.fp8_block[0], 0);
    load_golden(&c, "tiny-fp8");
    cr_assert_eq(c.q_lora_rank, 96);
    cr_assert_eq(c.fp8_block[0], 128);
    cr_assert_eq(c.fp8_block[1], 128);
}

/* ---- variants of the tiny-f32 config ---- */

static cJSON *golden_json(void) {
    char path[1024];
    char *text = test_read_file(test_data_path(path, sizeof path, "golden/tiny-f32/config.json"), NULL);
    cr_assert_not_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(j);
    return j;
}

/* Parse j; returns rc and fills err. */
static int parse_json(cJSON *j, spex_config_t *c, spex_err_t *err) {
    char *text = cJSON_PrintUnformatted(j);
    int rc = config_parse(c, text, "cfg.json", err);
    free(text);
    return rc;
}

static void set(cJSON *j, const char *key, cJSON *v) {
    if (cJSON_GetObjectItemCaseSensitive(j, key)) cJSON_ReplaceItemInObjectCaseSensitive(j, key, v);
    else cJSON_AddItemToObject(j, key, v);
}

/* Set key to v, expect failure with every needle in the message. */
static void expect_error(const char *key, cJSON *v, const char *needle1, const char *needle2) {
    cJSON *j = golden_json();
    if (v) set(j, key, v);
    else cJSON_DeleteItemFromObjectCaseSensitive(j, key);
    spex_config_t c;
    spex_err_t err = {0};
    cr_assert_eq(parse_json(j, &c, &err), -1, "expected an error for %s", key);
    cr_assert(strstr(err.msg, "cfg.json"), "message names the origin: %s", err.msg);
    cr_assert(strstr(err.msg, needle1), "'%s' not in: %s", needle1, err.msg);
    if (needle2) cr_assert(strstr(err.msg, needle2), "'%s' not in: %s", needle2, err.msg);
    cJSON_Delete(j);
}

Test(config, wrong_types) {
    expect_error("hidden_size", cJSON_CreateString("128"), "field 'hidden_size'", "expected a number, got string");
    expect_error("hidden_size", cJSON_CreateNumber(127.5), "field 'hidden_size'", "integer");
    expect_error("norm_topk_prob", cJSON_CreateNumber(1), "field 'norm_topk_prob'", "expected a bool, got number");
    expect_error("rope_theta", cJSON_CreateTrue(), "field 'rope_theta'", "got bool");
    expect_error("scoring_func", cJSON_CreateNumber(0), "field 'scoring_func'", "expected a string");
    expect_error("rope_scaling", cJSON_CreateString("yarn"), "field 'rope_scaling'", "object");
}

Test(config, bad_values) {
    expect_error("hidden_size", cJSON_CreateNumber(0), "field 'hidden_size'", "> 0");
    expect_error("num_attention_heads", cJSON_CreateNumber(-4), "field 'num_attention_heads'", NULL);
    expect_error("vocab_size", NULL, "field 'vocab_size'", "missing");
    expect_error("n_group", cJSON_CreateNumber(3), "field 'n_group'", "multiple");
    expect_error("topk_group", cJSON_CreateNumber(5), "field 'topk_group'", "n_group");
    expect_error("num_experts_per_tok", cJSON_CreateNumber(17), "field 'num_experts_per_tok'", "n_routed_experts");
    expect_error("num_experts_per_tok", cJSON_CreateNumber(9), "field 'num_experts_per_tok'", "topk_group");
    expect_error("scoring_func", cJSON_CreateString("relu"), "field 'scoring_func'", "relu");
    expect_error("topk_method", cJSON_CreateString("random"), "field 'topk_method'", "random");
    expect_error("qk_rope_head_dim", cJSON_CreateNumber(15), "field 'qk_rope_head_dim'", "even");
    expect_error("moe_layer_freq", cJSON_CreateNumber(0), "field 'moe_layer_freq'", NULL);
    expect_error("rms_norm_eps", cJSON_CreateNumber(0), "field 'rms_norm_eps'", NULL);
    expect_error("intermediate_size", NULL, "field 'intermediate_size'", "missing");
    /* corrupt sizes are refused by the config, before any shape table or allocation is built */
    expect_error("num_hidden_layers", cJSON_CreateNumber(1e9), "field 'num_hidden_layers'", "maximum 1024");
    expect_error("qk_rope_head_dim", cJSON_CreateNumber(2147483646), "field 'qk_rope_head_dim'", "maximum");
    expect_error("max_position_embeddings", cJSON_CreateNumber(2147483647), "field 'max_position_embeddings'", "maximum");
    expect_error("num_nextn_predict_layers", cJSON_CreateNumber(100000), "field 'num_nextn_predict_layers'", NULL);
}

/* Issue 16 item 7: INT_MAX layers plus an MTP layer (a signed overflow in
 * num_hidden_layers + num_nextn_predict_layers under UBSan) and 2e9 layers
 * (a per-layer loop before the cap) are refused by the cap, naming the field. */
Test(config, huge_layer_counts_refused_before_use) {
    const double counts[] = {2147483647.0, 2e9};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        cJSON *j = golden_json();
        set(j, "num_hidden_layers", cJSON_CreateNumber(counts[i]));
        set(j, "num_nextn_predict_layers", cJSON_CreateNumber(1));
        set(j, "first_k_dense_replace", cJSON_CreateNumber(0));   /* all MoE: the old loop ran to the end */
        spex_config_t c;
        spex_err_t err = {0};
        cr_assert_eq(parse_json(j, &c, &err), -1);
        cr_assert(strstr(err.msg, "field 'num_hidden_layers'") && strstr(err.msg, "maximum 1024"), "%s", err.msg);
        cJSON_Delete(j);
    }
}

/* intermediate_size is required exactly when some layer is dense: the closed
 * form (any_dense_layer) against config_layer_is_moe over every layer. */
Test(config, intermediate_size_required_iff_a_dense_layer) {
    for (int layers = 1; layers <= 4; layers++)
        for (int mtp = 0; mtp <= 1; mtp++)
            for (int first_k = 0; first_k <= 2; first_k++)
                for (int freq = 1; freq <= 3; freq++) {
                    cJSON *j = golden_json();
                    set(j, "num_hidden_layers", cJSON_CreateNumber(layers));
                    set(j, "num_nextn_predict_layers", cJSON_CreateNumber(mtp));
                    set(j, "first_k_dense_replace", cJSON_CreateNumber(first_k));
                    set(j, "moe_layer_freq", cJSON_CreateNumber(freq));
                    spex_config_t c;
                    spex_err_t err = {0};
                    cr_assert_eq(parse_json(j, &c, &err), 0, "%s", err.msg);
                    bool dense = false;
                    for (int l = 0; l < layers + mtp; l++) dense |= !config_layer_is_moe(&c, l);
                    cJSON_DeleteItemFromObjectCaseSensitive(j, "intermediate_size");
                    int rc = parse_json(j, &c, &err);
                    cr_assert_eq(rc, dense ? -1 : 0, "layers %d mtp %d first_k %d freq %d: %s", layers, mtp, first_k,
                                 freq, err.msg);
                    cJSON_Delete(j);
                }
}

Test(config, rope_scaling_variants) {
    spex_config_t c;
    spex_err_t err = {0};
    cJSON *j = golden_json();
    set(j, "rope_scaling", cJSON_CreateNull());
    cr_assert_eq(parse_json(j, &c, &err), 0, "%s", err.msg);
    cr_assert(!c.rope_scaling.yarn);
    cJSON_DeleteItemFromObjectCaseSensitive(j, "rope_scaling");
    cr_assert_eq(parse_json(j, &c, &err), 0, "%s", err.msg);
    cr_assert(!c.rope_scaling.yarn);
    /* newer transformers spell it rope_type; absent sub-keys take the YaRN class defaults */
    cJSON *rs = cJSON_CreateObject();
    cJSON_AddStringToObject(rs, "rope_type", "yarn");
    cJSON_AddNumberToObject(rs, "factor", 4);
    set(j, "rope_scaling", rs);
    cr_assert_eq(parse_json(j, &c, &err), 0, "%s", err.msg);
    cr_assert(c.rope_scaling.yarn);
    cr_assert_float_eq(c.rope_scaling.factor, 4.0, 1e-12);
    cr_assert_eq(c.rope_scaling.original_max_position_embeddings, 4096);
    cr_assert_float_eq(c.rope_scaling.beta_fast, 32.0, 1e-12);
    cr_assert_float_eq(c.rope_scaling.mscale_all_dim, 0.0, 1e-12);
    rs = cJSON_CreateObject();
    cJSON_AddStringToObject(rs, "type", "linear");
    cJSON_AddNumberToObject(rs, "factor", 4);
    set(j, "rope_scaling", rs);
    cr_assert_eq(parse_json(j, &c, &err), -1);
    cr_assert(strstr(err.msg, "rope_scaling.type"), "%s", err.msg);
    rs = cJSON_CreateObject();
    cJSON_AddStringToObject(rs, "type", "yarn");
    set(j, "rope_scaling", rs);
    cr_assert_eq(parse_json(j, &c, &err), -1);
    cr_assert(strstr(err.msg, "rope_scaling.factor"), "%s", err.msg);
    cJSON_Delete(j);
}

Test(config, defaults_when_absent) {
    const char *json = "{\"vocab_size\": 100, \"hidden_size\": 64, \"num_hidden_layers\": 2,"
                       " \"num_attention_heads\": 2, \"kv_lora_rank\": 16, \"qk_nope_head_dim\": 8,"
                       " \"qk_rope_head_dim\": 4, \"v_head_dim\": 8, \"intermediate_size\": 96}";
    spex_config_t c;
    spex_err_t err = {0};
    cr_assert_eq(config_parse(&c, json, "min.json", &err), 0, "%s", err.msg);
    cr_assert_eq(c.q_lora_rank, 0);
    cr_assert_eq(c.n_routed_experts, 0, "absent: dense model");
    cr_assert(!config_layer_is_moe(&c, 0) && !config_layer_is_moe(&c, 1));
    cr_assert_eq(c.n_group, 1);
    cr_assert_eq(c.topk_group, 1);
    cr_assert_eq(c.first_k_dense_replace, 0);
    cr_assert_eq(c.moe_layer_freq, 1);
    cr_assert_eq(c.num_nextn_predict_layers, 0);
    cr_assert_float_eq(c.routed_scaling_factor, 2.5, 1e-12);
    cr_assert(c.norm_topk_prob);
    cr_assert_eq(c.scoring_func, SCORING_SIGMOID);
    cr_assert_eq(c.topk_method, TOPK_NOAUX_TC);
    cr_assert_float_eq(c.rope_theta, 10000.0, 1e-9);
    cr_assert_float_eq(c.rms_norm_eps, 1e-6, 1e-18);
    cr_assert_eq(c.max_position_embeddings, 4096);
    cr_assert_eq(c.bos_token_id, -1);
    cr_assert_eq(c.eos_token_id, -1);
    cr_assert(!c.rope_scaling.yarn);
    cr_assert_eq(c.fp8_block[0], 0);
}

Test(config, moe_layout_and_quant) {
    cJSON *j = golden_json();
    set(j, "moe_layer_freq", cJSON_CreateNumber(2));
    set(j, "first_k_dense_replace", cJSON_CreateNumber(0));
    cJSON *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "quant_method", "fp8");
    set(j, "quantization_config", q);
    set(j, "scoring_func", cJSON_CreateString("softmax"));
    set(j, "topk_method", cJSON_CreateString("group_limited_greedy"));
    spex_config_t c;
    spex_err_t err = {0};
    cr_assert_eq(parse_json(j, &c, &err), 0, "%s", err.msg);
    cr_assert(config_layer_is_moe(&c, 0));
    cr_assert(!config_layer_is_moe(&c, 1));
    cr_assert(config_layer_is_moe(&c, 2));
    cr_assert_eq(c.fp8_block[0], 128, "quantization_config without block size -> 128x128");
    cr_assert_eq(c.scoring_func, SCORING_SOFTMAX);
    cr_assert_eq(c.topk_method, TOPK_GROUP_LIMITED_GREEDY);
    cJSON *bad = cJSON_CreateObject();
    cJSON_AddItemToObject(bad, "weight_block_size", cJSON_CreateString("128"));
    set(j, "quantization_config", bad);
    cr_assert_eq(parse_json(j, &c, &err), -1);
    cr_assert(strstr(err.msg, "quantization_config.weight_block_size"), "%s", err.msg);
    cJSON_Delete(j);
}

Test(config, bad_json_position) {
    spex_config_t c;
    spex_err_t err = {0};
    cr_assert_eq(config_parse(&c, "{\n  \"hidden_size\": 128,\n  \"vocab_size\": ]\n}", "x.json", &err), -1);
    cr_assert(strstr(err.msg, "x.json"), "%s", err.msg);
    cr_assert(strstr(err.msg, "invalid JSON"), "%s", err.msg);
    cr_assert(strstr(err.msg, "line 3"), "%s", err.msg);
    cr_assert_eq(config_parse(&c, "[1, 2]", "x.json", &err), -1);
    cr_assert(strstr(err.msg, "object"), "%s", err.msg);
    cr_assert_eq(config_parse(&c, "", "x.json", &err), -1);
    cr_assert_eq(config_load(&c, "/nonexistent/config.json", &err), -1);
    cr_assert(strstr(err.msg, "/nonexistent/config.json"), "%s", err.msg);
}
