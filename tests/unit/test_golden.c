/* test_golden.c - the engine against DeepSeek-V3's own reference outputs.
 *
 * tests/data/golden/<fixture>/golden.json holds what DeepSeek's official
 * inference code (float32) computes for a prompt: prefill logits, greedy decode
 * with the KV cache, and the MTP module's logits. We require max |diff| <= 1e-3
 * for all of them, for the F32, BF16 (no q_lora) and FP8 (block scales)
 * checkpoints; the reference agrees with itself to ~6e-6. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kernels.h"
#include "coordinator/decode/score.h"
#include "testutil.h"

#define GOLDEN_TOL 1e-3

typedef struct golden {
    cJSON *root;
    int32_t tokens[64];
    int n;
    model_t *model;
} golden_t;

static void golden_open(golden_t *g, const char *fixture) {
    char dir[1024], path[1100];
    test_data_path(dir, sizeof dir, "golden");
    snprintf(path, sizeof path, "%s/%s/golden.json", dir, fixture);
    char *text = test_read_file(path, NULL);
    cr_assert_not_null(text, "cannot read %s", path);
    g->root = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(g->root);
    cJSON *toks = cJSON_GetObjectItem(g->root, "tokens");
    g->n = cJSON_GetArraySize(toks);
    for (int i = 0; i < g->n; i++) g->tokens[i] = cJSON_GetArrayItem(toks, i)->valueint;
    snprintf(path, sizeof path, "%s/%s", dir, fixture);
    spex_err_t err = {0};
    g->model = model_load(path, NULL, &err);
    cr_assert_not_null(g->model, "load %s: %s", fixture, err.msg);
}

static void golden_close(golden_t *g) {
    model_free(g->model);
    cJSON_Delete(g->root);
}

/* max |rows - json rows| over a [n, V] matrix given as a JSON array of arrays. */
static double rows_diff(const float *rows, const cJSON *ref, int n, int V) {
    cr_assert_eq(cJSON_GetArraySize(ref), n);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *row = cJSON_GetArrayItem(ref, i);
        cr_assert_eq(cJSON_GetArraySize(row), V);
        for (int j = 0; j < V; j++) {
            double d = fabs(rows[(size_t)i * V + j] - cJSON_GetArrayItem(row, j)->valuedouble);
            if (!(d <= worst)) worst = d;
        }
    }
    return worst;
}

static void check_score(const char *fixture, bool decode) {
    golden_t g;
    golden_open(&g, fixture);
    score_result_t r;
    spex_err_t err = {0};
    cr_assert_eq(score_sequence(g.model, g.tokens, g.n, decode, true, &r, &err), 0, "%s", err.msg);
    double d = rows_diff(r.logits, cJSON_GetObjectItem(g.root, "prefill_logits"), g.n, r.vocab);
    cJSON *mtp = cJSON_GetObjectItem(g.root, "mtp");
    cr_assert_eq(r.main_next, cJSON_GetObjectItem(mtp, "main_next_token")->valueint);
    double dm = rows_diff(r.mtp_logits, cJSON_GetObjectItem(mtp, "logits"), g.n, r.vocab);
    fprintf(stderr, "golden %-13s %-7s main max|diff| %.3g  mtp max|diff| %.3g\n", fixture,
            decode ? "decode" : "prefill", d, dm);
    cr_expect(d <= GOLDEN_TOL, "%s main logits differ by %g", fixture, d);
    cr_expect(dm <= GOLDEN_TOL, "%s MTP logits differ by %g", fixture, dm);
    score_result_free(&r);
    golden_close(&g);
}

/* Prefill the prompt, then greedy-decode token by token through the cache. */
static void check_greedy(const char *fixture) {
    golden_t g;
    golden_open(&g, fixture);
    model_t *m = g.model;
    int V = m->cfg.vocab_size;
    cJSON *gen = cJSON_GetObjectItem(g.root, "greedy_generated");
    cJSON *ref = cJSON_GetObjectItem(g.root, "greedy_step_logits");
    int steps = cJSON_GetArraySize(gen);
    spex_err_t err = {0};
    kv_cache_t *kv = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim, 64, &err);
    float *logits = malloc(sizeof(float) * (size_t)g.n * V), *steps_l = malloc(sizeof(float) * (size_t)steps * V);
    uint8_t *want = calloc((size_t)g.n, 1);
    want[g.n - 1] = 1;
    mla_seq_t seq = {kv, g.n};
    cr_assert_eq(model_forward(m, g.tokens, &seq, 1, NULL, want, logits, &err), 0, "%s", err.msg);
    memcpy(steps_l, logits, sizeof(float) * V);
    for (int s = 0; s < steps; s++) {
        int32_t next = argmax(steps_l + (size_t)s * V, V);
        cr_assert_eq(next, cJSON_GetArrayItem(gen, s)->valueint, "%s: step %d generated %d", fixture, s, next);
        if (s + 1 == steps) break;
        mla_seq_t one = {kv, 1};
        cr_assert_eq(model_forward(m, &next, &one, 1, NULL, NULL, steps_l + (size_t)(s + 1) * V, &err), 0, "%s",
                     err.msg);
    }
    double d = rows_diff(steps_l, ref, steps, V);
    fprintf(stderr, "golden %-13s greedy  step logits max|diff| %.3g\n", fixture, d);
    cr_expect(d <= GOLDEN_TOL, "%s greedy step logits differ by %g", fixture, d);
    free(logits);
    free(steps_l);
    free(want);
    kv_cache_free(kv);
    golden_close(&g);
}

Test(golden, f32_prefill) { check_score("tiny-f32", false); }
Test(golden, f32_decode) { check_score("tiny-f32", true); }
Test(golden, f32_greedy) { check_greedy("tiny-f32"); }
Test(golden, bf16_noq_prefill) { check_score("tiny-bf16-noq", false); }
Test(golden, bf16_noq_decode) { check_score("tiny-bf16-noq", true); }
Test(golden, bf16_noq_greedy) { check_greedy("tiny-bf16-noq"); }
Test(golden, fp8_prefill) { check_score("tiny-fp8", false); }
Test(golden, fp8_decode) { check_score("tiny-fp8", true); }
Test(golden, fp8_greedy) { check_greedy("tiny-fp8"); }
