/* test_bias_balance.c - the dynamic routing bias controller (bias_balance.h):
 * the update rule by hand, window accounting, and on a model, that it moves
 * a skewed expert load towards balance while the gate weights stay unbiased. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/model/bias_balance.h"
#include "coordinator/model/model.h"
#include "coordinator/model/kv_cache.h"
#include "tools/synth.h"

Test(bias_balance, rule_moves_each_expert_towards_the_mean) {
    float delta[4] = {0.5f, 0, 0, -1};
    uint64_t load[4] = {5, 3, 4, 4};   /* mean 4: over, under, equal, equal */
    bias_balance_rule(delta, load, 4, 0.25f);
    cr_assert_float_eq(delta[0], 0.25f, 0);
    cr_assert_float_eq(delta[1], 0.25f, 0);
    cr_assert_float_eq(delta[2], 0.0f, 0);
    cr_assert_float_eq(delta[3], -1.0f, 0);
    uint64_t none[4] = {0};
    bias_balance_rule(delta, none, 4, 0.25f);   /* nothing routed: nothing moves */
    cr_assert_float_eq(delta[1], 0.25f, 0);
}

Test(bias_balance, windows_close_every_n_rows_per_layer) {
    spex_err_t err = {0};
    bias_balance_t *b = bias_balance_create(2, 4, 2, 0.1f, 3, &err);
    cr_assert_not_null(b, "%s", err.msg);
    int32_t idx[5 * 2] = {0, 1, 0, 1, 0, 2, 0, 1, 0, 3};   /* expert 0 in every row */
    bias_balance_observe(b, 1, idx, 2);
    cr_assert_eq(bias_balance_stats(b).updates, 0);
    bias_balance_observe(b, 1, idx + 4, 1);                 /* third row closes layer 1's window */
    cr_assert_eq(bias_balance_stats(b).updates, 1);
    const float *d1 = bias_balance_delta(b, 1), *d0 = bias_balance_delta(b, 0);
    cr_assert(d1[0] < 0 && d1[3] > 0, "over-loaded expert 0 pushed down, idle expert 3 up: %g %g", d1[0], d1[3]);
    cr_assert(d0[0] == 0 && d0[3] == 0, "layer 0 saw nothing");
    cr_assert_float_eq(bias_balance_stats(b).last_max_over_mean, 3.0 * 4 / 6, 1e-12);   /* loads 3,2,1,0 */
    bias_balance_free(b);
}

Test(bias_balance, bad_parameters_are_refused) {
    spex_err_t err = {0};
    cr_assert_null(bias_balance_create(2, 4, 2, 0.0f, 3, &err));
    cr_assert(strstr(err.msg, "--bias-update-rate"), "%s", err.msg);
    cr_assert_null(bias_balance_create(2, 4, 2, 0.1f, 0, &err));
    cr_assert(strstr(err.msg, "--bias-update-window"), "%s", err.msg);
    cr_assert_null(bias_balance_create(2, 4, 5, 0.1f, 3, &err));
}

/* Route `rounds` batches of 32 rows; the last closed window's max/mean load (over MoE layers). */
static double route_many(model_t *m, kv_cache_t *kv, int rounds, unsigned seed) {
    int V = m->cfg.vocab_size, n = 32;
    int32_t toks[32];
    float *h = malloc(sizeof(float) * (size_t)n * m->cfg.hidden_size);
    spex_err_t err = {0};
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < n; i++) toks[i] = (int32_t)((seed + (unsigned)(r * 131 + i * 17)) % (unsigned)V);
        kv_cache_reset(kv, 0, kv->n_layers);
        mla_seq_t s = {kv, n};
        cr_assert_eq(model_forward(m, toks, &s, 1, h, NULL, NULL, &err), 0, "%s", err.msg);
    }
    free(h);
    return bias_balance_stats(m->balance).last_max_over_mean;
}

Test(bias_balance, evens_out_a_skewed_router_on_a_model, .timeout = 120) {
    char dir[] = "/tmp/spex-bias-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    spex_config_t cfg;
    spex_err_t err = {0};
    cr_assert_eq(synth_preset("tiny", &cfg, &err), 0, "%s", err.msg);
    synth_opts_t o = {.dtype = SYNTH_F32, .seed = 5, .shards = 1};
    cr_assert_eq(synth_write(dir, &cfg, &o, &err), 0, "%s", err.msg);
    model_t *m = model_load(dir, NULL, &err);
    cr_assert_not_null(m, "%s", err.msg);
    int L = -1;
    for (int l = 0; l < m->cfg.num_hidden_layers && L < 0; l++) if (m->layers[l].moe) L = l;
    cr_assert(L >= 0 && m->layers[L].router.bias, "the tiny model has a noaux_tc MoE layer");
    for (int e = 0; e < m->cfg.n_routed_experts; e++)   /* skew: expert e's selection bias falls with e */
        m->layers[L].router.bias[e] = 0.5f * (float)(m->cfg.n_routed_experts - e) / (float)m->cfg.n_routed_experts;
    kv_cache_t *kv = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim, 64, &err);
    cr_assert_eq(model_set_bias_update(m, 0.02f, 256, &err), 0, "%s", err.msg);
    double first = route_many(m, kv, 8, 1);     /* 256 rows: the first window, no correction yet */
    double later = route_many(m, kv, 8 * 60, 2);
    cr_log_info("max/mean load of the last window: first %.3f, after 60 updates %.3f", first, later);
    cr_assert(first > 1.3, "the fixture is skewed (max/mean %.3f)", first);
    cr_assert(later < first * 0.8, "balancing must reduce max/mean: first %.3f, later %.3f", first, later);
    kv_cache_free(kv);
    model_free(m);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
