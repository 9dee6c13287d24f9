/* test_synth.c - the random checkpoint generator and the expected-tensor check:
 * tiny models in every dtype and sharded reopen, pass model_check_tensors and
 * hold the generator's values (f32 exact; bf16/f16/fp8 within their rounding
 * error); the golden checkpoints pass the check; mismatched configs fail it
 * naming the tensor; presets have the documented sizes. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/model_check.h"
#include "core/safetensors.h"
#include "testutil.h"
#include "tools/synth.h"

typedef struct { char dir[256]; } tmpdir_t;

static void tmp_make(tmpdir_t *t) {
    snprintf(t->dir, sizeof t->dir, "/tmp/spex-synth-XXXXXX");
    cr_assert_not_null(mkdtemp(t->dir));
}

static void tmp_clean(tmpdir_t *t) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    cr_assert_eq(system(cmd), 0);
}

static void tiny(spex_config_t *cfg) {
    spex_err_t err = {0};
    cr_assert_eq(synth_preset("tiny", cfg, &err), 0, "%s", err.msg);
}

static void write_model(const char *dir, const spex_config_t *cfg, synth_dtype_t dt, int shards) {
    synth_opts_t o = {.dtype = dt, .seed = 42, .shards = shards};
    spex_err_t err = {0};
    cr_assert_eq(synth_write(dir, cfg, &o, &err), 0, "%s", err.msg);
}

/* Open dir with its own config.json; check the tensors against the config. */
static tensor_store_t *open_checked(const char *dir, spex_config_t *cfg) {
    char path[512];
    spex_err_t err = {0};
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert_eq(config_load(cfg, path, &err), 0, "%s", err.msg);
    tensor_store_t *ts = tensor_store_open(dir, cfg->fp8_block, &err);
    cr_assert_not_null(ts, "%s", err.msg);
    cr_assert_eq(model_check_tensors(cfg, ts, &err), 0, "%s", err.msg);
    cr_assert_eq(model_count_unexpected(cfg, ts, NULL, 0), 0);
    return ts;
}

/* Allowed |got - want| for one element: relative rounding error + an absolute floor. */
typedef struct { double rel, abs_floor; } tol_t;

static tol_t tolerance(spex_dtype_t stored, float amax) {
    switch (stored) {
    case DTYPE_F32: return (tol_t){0, 0};
    case DTYPE_BF16: return (tol_t){ldexp(1, -8), 0};               /* half an ulp: 7 mantissa bits */
    case DTYPE_F16: return (tol_t){ldexp(1, -11), ldexp(1, -25)};   /* 10 bits; subnormals below 2^-14 */
    default: return (tol_t){ldexp(1, -4), amax / 448.0 * ldexp(1, -10)};   /* 3 bits; subnormal step x scale */
    }
}

/* Every tensor of the model equals synth_tensor_values() within its dtype's error. */
static void check_values(const tensor_store_t *ts, const spex_config_t *cfg) {
    model_tensor_t *mt;
    size_t n;
    spex_err_t err = {0};
    cr_assert_eq(model_tensors(cfg, &mt, &n, &err), 0);
    for (size_t i = 0; i < n; i++) {
        const st_tensor_t *t = tensor_store_find(ts, mt[i].name);
        size_t numel = (size_t)t->numel;
        float *want = malloc(numel * 4);
        float *got = tensor_store_load_f32_alloc(ts, mt[i].name, mt[i].ndim, mt[i].shape, &err);
        cr_assert_not_null(got, "%s", err.msg);
        synth_tensor_values(&mt[i], 42, want);
        float amax = 0;
        for (size_t k = 0; k < numel; k++) amax = fmaxf(amax, fabsf(want[k]));
        tol_t tol = tolerance(t->dtype, amax);
        for (size_t k = 0; k < numel; k++) {
            double d = fabs((double)got[k] - want[k]);
            cr_assert(d <= tol.rel * fabs(want[k]) + tol.abs_floor, "%s [%zu] (%s): %.9g vs %.9g", mt[i].name, k,
                      dtype_name(t->dtype), got[k], want[k]);
        }
        free(want);
        free(got);
    }
    free(mt);
}

static void roundtrip(synth_dtype_t dt) {
    tmpdir_t t;
    tmp_make(&t);
    spex_config_t cfg, back;
    tiny(&cfg);
    write_model(t.dir, &cfg, dt, 1);
    tensor_store_t *ts = open_checked(t.dir, &back);
    cr_assert_eq(back.hidden_size, cfg.hidden_size);
    cr_assert_eq(back.n_group, cfg.n_group);
    cr_assert(back.rope_scaling.yarn);
    cr_assert_eq(back.rope_scaling.factor, cfg.rope_scaling.factor);
    cr_assert_eq(back.rms_norm_eps, cfg.rms_norm_eps);
    cr_assert_eq(back.fp8_block[0], dt == SYNTH_FP8 ? 128 : 0);
    check_values(ts, &back);
    /* the layouts of the golden files: which tensors have which dtype */
    const st_tensor_t *bias = tensor_store_find(ts, "model.layers.1.mlp.gate.e_score_correction_bias");
    const st_tensor_t *proj = tensor_store_find(ts, "model.layers.1.mlp.experts.3.up_proj.weight");
    const st_tensor_t *eh = tensor_store_find(ts, "model.layers.3.eh_proj.weight");
    cr_assert_eq(bias->dtype, DTYPE_F32);
    spex_dtype_t want_proj[] = {DTYPE_F32, DTYPE_BF16, DTYPE_F16, DTYPE_F8_E4M3};
    spex_dtype_t want_other[] = {DTYPE_F32, DTYPE_BF16, DTYPE_F16, DTYPE_BF16};
    cr_assert_eq(proj->dtype, want_proj[dt]);
    cr_assert_eq(eh->dtype, want_other[dt]);
    cr_assert_eq(tensor_store_find(ts, "lm_head.weight")->dtype, want_other[dt]);
    tensor_store_free(ts);
    tmp_clean(&t);
}

Test(synth, roundtrip_f32) { roundtrip(SYNTH_F32); }
Test(synth, roundtrip_bf16) { roundtrip(SYNTH_BF16); }
Test(synth, roundtrip_f16) { roundtrip(SYNTH_F16); }
Test(synth, roundtrip_fp8) { roundtrip(SYNTH_FP8); }

Test(synth, fp8_matches_golden_layout) {
    /* same names, dtypes and shapes as tests/data/golden/tiny-fp8 */
    tmpdir_t t;
    tmp_make(&t);
    spex_config_t cfg;
    tiny(&cfg);
    write_model(t.dir, &cfg, SYNTH_FP8, 1);
    char gdir[1024];
    spex_err_t err = {0};
    int block[2] = {128, 128};
    tensor_store_t *g = tensor_store_open(test_data_path(gdir, sizeof gdir, "golden/tiny-fp8"), block, &err);
    tensor_store_t *s = tensor_store_open(t.dir, block, &err);
    cr_assert(g && s, "%s", err.msg);
    cr_assert_eq(tensor_store_count(g), tensor_store_count(s));
    for (size_t i = 0; i < tensor_store_count(g); i++) {
        const st_tensor_t *a = tensor_store_at(g, i), *b = tensor_store_at(s, i);
        cr_assert_str_eq(a->name, b->name);
        cr_assert_eq(a->dtype, b->dtype, "%s: %s vs %s", a->name, dtype_name(a->dtype), dtype_name(b->dtype));
        cr_assert_eq(a->ndim, b->ndim);
        for (int d = 0; d < a->ndim; d++) cr_assert_eq(a->shape[d], b->shape[d], "%s", a->name);
    }
    tensor_store_free(g);
    tensor_store_free(s);
    tmp_clean(&t);
}

Test(synth, shards_and_index) {
    tmpdir_t a, b;
    tmp_make(&a);
    tmp_make(&b);
    spex_config_t cfg, back;
    tiny(&cfg);
    write_model(a.dir, &cfg, SYNTH_BF16, 3);
    write_model(b.dir, &cfg, SYNTH_BF16, 1);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", a.dir);
    cr_assert_eq(access(path, F_OK), 0);
    for (int i = 1; i <= 3; i++) {
        snprintf(path, sizeof path, "%s/model-%05d-of-00003.safetensors", a.dir, i);
        cr_assert_eq(access(path, F_OK), 0, "%s", path);
    }
    tensor_store_t *sa = open_checked(a.dir, &back), *sb = open_checked(b.dir, &back);
    cr_assert_eq(tensor_store_file_count(sa), 3);
    cr_assert_eq(tensor_store_count(sa), tensor_store_count(sb));
    for (size_t i = 0; i < tensor_store_count(sa); i++) {
        const st_tensor_t *x = tensor_store_at(sa, i), *y = tensor_store_at(sb, i);
        cr_assert_str_eq(x->name, y->name);
        cr_assert_eq(x->nbytes, y->nbytes);
        cr_assert_eq(memcmp(x->data, y->data, x->nbytes), 0, "%s differs between sharded and single", x->name);
    }
    tensor_store_free(sa);
    tensor_store_free(sb);
    /* FP8 shards keep each weight with its scale */
    spex_err_t err = {0};
    synth_opts_t o = {.dtype = SYNTH_FP8, .seed = 42, .shards = 4, .overwrite = true};
    cr_assert_eq(synth_write(a.dir, &cfg, &o, &err), 0, "%s", err.msg);
    sa = open_checked(a.dir, &back);
    check_values(sa, &back);
    tensor_store_free(sa);
    tmp_clean(&a);
    tmp_clean(&b);
}

Test(synth, overwrite_rules) {
    tmpdir_t t;
    tmp_make(&t);
    spex_config_t cfg, back;
    tiny(&cfg);
    cfg.num_hidden_layers = 2;
    write_model(t.dir, &cfg, SYNTH_F32, 2);
    synth_opts_t o = {.dtype = SYNTH_F32, .seed = 1, .shards = 1};
    spex_err_t err = {0};
    cr_assert_eq(synth_write(t.dir, &cfg, &o, &err), -1);
    cr_assert(strstr(err.msg, "already holds a checkpoint"), "%s", err.msg);
    o.overwrite = true;
    cr_assert_eq(synth_write(t.dir, &cfg, &o, &err), 0, "%s", err.msg);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", t.dir);
    cr_assert_eq(access(path, F_OK), -1, "the stale index is gone");
    tensor_store_t *ts = open_checked(t.dir, &back);
    cr_assert_eq(tensor_store_file_count(ts), 1);
    tensor_store_free(ts);
    /* an invalid config is refused before anything is written */
    cfg.n_group = 3;
    cr_assert_eq(synth_write(t.dir, &cfg, &o, &err), -1);
    cr_assert(strstr(err.msg, "n_group"), "%s", err.msg);
    tmp_clean(&t);
}

Test(synth, config_variants) {
    tmpdir_t t;
    tmp_make(&t);
    spex_config_t cfg, back;
    tiny(&cfg);
    cfg.q_lora_rank = 0;             /* plain q_proj */
    cfg.num_nextn_predict_layers = 2;
    cfg.moe_layer_freq = 2;          /* layers 0, 2, 4 MoE; 1, 3 dense */
    cfg.first_k_dense_replace = 0;
    cfg.tie_word_embeddings = true;
    cfg.topk_method = TOPK_GREEDY;   /* no e_score_correction_bias */
    cfg.n_shared_experts = 0;
    cfg.rope_scaling.yarn = false;
    write_model(t.dir, &cfg, SYNTH_BF16, 1);
    tensor_store_t *ts = open_checked(t.dir, &back);
    cr_assert_eq(back.q_lora_rank, 0);
    cr_assert(!back.rope_scaling.yarn);
    cr_assert(back.tie_word_embeddings);
    cr_assert_not_null(tensor_store_find(ts, "model.layers.0.self_attn.q_proj.weight"));
    cr_assert_null(tensor_store_find(ts, "lm_head.weight"));
    cr_assert_null(tensor_store_find(ts, "model.layers.0.mlp.gate.e_score_correction_bias"));
    cr_assert_null(tensor_store_find(ts, "model.layers.0.mlp.shared_experts.up_proj.weight"));
    cr_assert_not_null(tensor_store_find(ts, "model.layers.1.mlp.up_proj.weight"));
    cr_assert_not_null(tensor_store_find(ts, "model.layers.4.mlp.experts.15.down_proj.weight"));
    cr_assert_not_null(tensor_store_find(ts, "model.layers.4.shared_head.head.weight"));
    tensor_store_free(ts);
    tmp_clean(&t);
}

/* ---- model_check against the golden checkpoints and mismatched configs ---- */

static tensor_store_t *golden(const char *fixture, spex_config_t *cfg) {
    char rel[256], dir[1024], path[1100];
    snprintf(rel, sizeof rel, "golden/%s", fixture);
    test_data_path(dir, sizeof dir, rel);
    snprintf(path, sizeof path, "%s/config.json", dir);
    spex_err_t err = {0};
    cr_assert_eq(config_load(cfg, path, &err), 0, "%s", err.msg);
    tensor_store_t *ts = tensor_store_open(dir, cfg->fp8_block, &err);
    cr_assert_not_null(ts, "%s", err.msg);
    return ts;
}

Test(model_check, golden_pass) {
    const char *fx[] = {"tiny-f32", "tiny-bf16-noq", "tiny-fp8"};
    for (int i = 0; i < 3; i++) {
        spex_config_t cfg;
        spex_err_t err = {0};
        tensor_store_t *ts = golden(fx[i], &cfg);
        cr_assert_eq(model_check_tensors(&cfg, ts, &err), 0, "%s: %s", fx[i], err.msg);
        cr_assert_eq(model_count_unexpected(&cfg, ts, NULL, 0), 0, "%s", fx[i]);
        tensor_store_free(ts);
    }
}

Test(model_check, mismatches_name_the_tensor) {
    spex_config_t cfg;
    spex_err_t err = {0};
    tensor_store_t *ts = golden("tiny-f32", &cfg);
    spex_config_t c = cfg;
    c.num_nextn_predict_layers = 2;
    cr_assert_eq(model_check_tensors(&c, ts, &err), -1);
    cr_assert(strstr(err.msg, "missing tensor 'model.layers.4."), "%s", err.msg);
    c = cfg;
    c.moe_intermediate_size = 64;
    cr_assert_eq(model_check_tensors(&c, ts, &err), -1);
    cr_assert(strstr(err.msg, "model.layers.1.mlp.experts.0.gate_proj.weight") &&
              strstr(err.msg, "has shape [96,128], expected [64,128]") && strstr(err.msg, "model.safetensors"),
              "%s", err.msg);
    c = cfg;
    c.q_lora_rank = 0;
    cr_assert_eq(model_check_tensors(&c, ts, &err), -1);
    cr_assert(strstr(err.msg, "q_proj"), "%s", err.msg);
    char first[256];
    cr_assert_gt(model_count_unexpected(&c, ts, first, sizeof first), 0);
    cr_assert(strstr(first, "q_a_") || strstr(first, "q_b_"), "%s", first);
    tensor_store_free(ts);
}

Test(model_check, expected_table) {
    spex_config_t cfg;
    tiny(&cfg);
    model_tensor_t *mt;
    size_t n;
    spex_err_t err = {0};
    cr_assert_eq(model_tensors(&cfg, &mt, &n, &err), 0);
    /* 3 global; per layer 2 norms + 7 attention; dense FFN 3; MoE 2 + 16*3 + 3; MTP extras 6 */
    size_t attn = 2 + 7, moe = 2 + 48 + 3;
    cr_assert_eq(n, 3 + (attn + 3) + 2 * (attn + moe) + (6 + attn + moe));
    size_t experts = 0;
    for (size_t i = 0; i < n; i++) experts += mt[i].expert >= 0;
    cr_assert_eq(experts, 3 * 16 * 3);
    free(mt);
}

Test(synth, preset_sizes) {
    const char *names[] = {"tiny", "small", "medium", "large"};
    uint64_t f32[4], fp8[4];
    for (int i = 0; i < 4; i++) {
        spex_config_t cfg;
        spex_err_t err = {0};
        cr_assert_eq(synth_preset(names[i], &cfg, &err), 0);
        char *text = synth_config_json(&cfg, SYNTH_F32);
        spex_config_t back;
        cr_assert_eq(config_parse(&back, text, names[i], &err), 0, "%s: %s", names[i], err.msg);
        free(text);
        cr_assert_eq(synth_data_bytes(&cfg, SYNTH_F32, &f32[i], &err), 0);
        cr_assert_eq(synth_data_bytes(&cfg, SYNTH_FP8, &fp8[i], &err), 0);
        cr_log_info("preset %-6s f32 %8.1f MB  fp8 %8.1f MB\n", names[i], f32[i] / 1e6, fp8[i] / 1e6);
        if (i) cr_assert_gt(f32[i], f32[i - 1]);
    }
    cr_assert_eq(f32[0], 9863872, "tiny is byte-for-byte the size of golden tiny-f32's data");
    cr_assert(f32[3] >= 1000000000ull && f32[3] <= 2200000000ull, "large: 1-2 GB in f32");
    spex_config_t bad;
    spex_err_t err = {0};
    cr_assert_eq(synth_preset("huge", &bad, &err), -1);
    cr_assert(strstr(err.msg, "huge"));
}

/* v3-shape: DeepSeek-V3's routing exactly (what bench spec --project's union
 * of verify rows' experts depends on), one MTP layer, and the size the docs quote. */
Test(synth, v3_shape_preset) {
    spex_config_t cfg, back;
    spex_err_t err = {0};
    cr_assert_eq(synth_preset("v3-shape", &cfg, &err), 0, "%s", err.msg);
    cr_assert_eq(cfg.n_routed_experts, 256);
    cr_assert_eq(cfg.num_experts_per_tok, 8);
    cr_assert_eq(cfg.n_group, 8);
    cr_assert_eq(cfg.topk_group, 4);
    cr_assert_eq(cfg.n_shared_experts, 1);
    cr_assert_eq(cfg.num_nextn_predict_layers, 1);
    cr_assert_eq(cfg.num_hidden_layers, 30);
    char *text = synth_config_json(&cfg, SYNTH_FP8);
    cr_assert_eq(config_parse(&back, text, "v3-shape", &err), 0, "%s", err.msg);
    free(text);
    uint64_t fp8 = 0;
    cr_assert_eq(synth_data_bytes(&cfg, SYNTH_FP8, &fp8, &err), 0, "%s", err.msg);
    cr_assert(fp8 > 6200000000ull && fp8 < 6300000000ull, "v3-shape FP8: %.1f MB, the docs say 6250", fp8 / 1e6);
}
