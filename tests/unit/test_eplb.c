/* test_eplb.c - coordinator/ep/eplb and eplb_load: a placement derived from
 * measured load. Properties over many random (skewed) loads, world sizes and
 * R: every expert hosted in every layer, replicas on distinct worker ranks,
 * exactly E + R slots per layer, at most ceil((E + R) / W) per rank, the
 * expected busiest rank never above the base placement's, the same input
 * giving the same placement; a hot expert gets the replicas; bad input (R
 * too large, stats of another model, bad JSON) fails naming file and field. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/ep/eplb.h"

static uint64_t next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* n_layers layers (all measured), Zipf-like loads with a random permutation per layer. */
static eplb_load_t zipf_load(int n_layers, int E, double s, uint64_t seed) {
    eplb_load_t l = {n_layers, E, calloc((size_t)n_layers * E, sizeof(double)), calloc((size_t)n_layers, sizeof(bool))};
    for (int k = 0; k < n_layers; k++) {
        l.measured[k] = true;
        for (int e = 0; e < E; e++) {
            int j = (int)(next(&seed) % (uint64_t)(e + 1));   /* Fisher-Yates position */
            l.tokens[(size_t)k * E + e] = l.tokens[(size_t)k * E + j];
            l.tokens[(size_t)k * E + j] = floor(1000.0 / pow(e + 1, s)) + (double)(next(&seed) % 7);
        }
    }
    return l;
}

static void check_properties(const placement_t *base, const placement_t *p, const eplb_load_t *ld, int R) {
    int E = ld->n_experts, W = p->world - 1, cap = (E + R + W - 1) / W;
    double *rl = malloc(sizeof(double) * (size_t)p->world);
    for (int l = 0; l < ld->n_layers; l++) {
        placement_table_t t = placement_table(p, l);
        int *per_rank = calloc((size_t)p->world, sizeof(int));
        for (int e = 0; e < E; e++) {
            cr_assert_gt(t.off[e + 1] - t.off[e], 0, "layer %d: expert %d not hosted", l, e);
            for (int j = t.off[e]; j < t.off[e + 1]; j++) {
                cr_assert(t.ranks[j] >= 1 && t.ranks[j] < p->world, "layer %d expert %d: rank %d", l, e, t.ranks[j]);
                if (j > t.off[e]) cr_assert_gt(t.ranks[j], t.ranks[j - 1], "layer %d expert %d: replicas share a rank", l, e);
                per_rank[t.ranks[j]]++;
            }
        }
        double mean, before = eplb_rank_load(base, l, ld->tokens + (size_t)l * E, rl, &mean);
        double after = eplb_rank_load(p, l, ld->tokens + (size_t)l * E, rl, &mean);
        cr_assert_leq(after, before + 1e-9, "layer %d: busiest rank %g above the base's %g", l, after, before);
        if (after < before) {   /* its own table (else the base's, checked above) */
            cr_assert_eq(t.off[E], E + R, "layer %d: %d slots, want E + R = %d", l, t.off[E], E + R);
            for (int r = 1; r < p->world; r++) cr_assert_leq(per_rank[r], cap, "layer %d rank %d: %d > %d slots", l, r, per_rank[r], cap);
        }
        free(per_rank);
    }
    free(rl);
}

Test(eplb, properties_over_random_loads) {
    int worlds[] = {2, 3, 5, 9}, experts[] = {8, 16, 64};
    double skews[] = {0.0, 0.6, 1.0, 1.5};
    for (int wi = 0; wi < 4; wi++)
        for (int ei = 0; ei < 3; ei++)
            for (int si = 0; si < 4; si++) {
                int world = worlds[wi], E = experts[ei];
                eplb_load_t ld = zipf_load(3, E, skews[si], (uint64_t)(wi * 100 + ei * 10 + si));
                spex_err_t err = {{0}};
                int mx = eplb_max_redundant(E, world), rs[] = {0, mx < 1 ? mx : 1, mx < world - 1 ? mx : world - 1, mx};
                for (int ri = 0; ri < 4; ri++) {
                    for (int pol = 0; pol < 2; pol++) {
                        placement_t *base = placement_balanced(E, world, (placement_policy_t)pol, &err);
                        placement_t *p = eplb_derive(&ld, base, rs[ri], &err);
                        cr_assert(p, "world %d E %d R %d: %s", world, E, rs[ri], err.msg);
                        check_properties(base, p, &ld, rs[ri]);
                        placement_t *q = eplb_derive(&ld, base, rs[ri], &err);   /* deterministic */
                        for (int l = 0; l < 3; l++) {
                            placement_table_t a = placement_table(p, l), b = placement_table(q, l);
                            cr_assert_eq(memcmp(a.off, b.off, sizeof(int) * ((size_t)E + 1)), 0);
                            cr_assert_eq(memcmp(a.ranks, b.ranks, sizeof(int) * (size_t)a.off[E]), 0);
                        }
                        placement_free(q);
                        placement_free(p);
                        placement_free(base);
                    }
                }
                eplb_load_free(&ld);
            }
}

/* 16 experts, 4 workers, Zipf 1.0 in expert order: contiguous puts the hottest
 * four on rank 1. Eight redundant slots bring the busiest rank near the mean. */
Test(eplb, skewed_load_is_balanced) {
    eplb_load_t ld = {1, 16, calloc(16, sizeof(double)), calloc(1, sizeof(bool))};
    ld.measured[0] = true;
    for (int e = 0; e < 16; e++) ld.tokens[e] = 1000.0 / (e + 1);
    spex_err_t err = {{0}};
    placement_t *base = placement_balanced(16, 5, PLACEMENT_CONTIGUOUS, &err);
    placement_t *p = eplb_derive(&ld, base, 8, &err);
    cr_assert(p, "%s", err.msg);
    double rl[5], mean;
    double before = eplb_rank_load(base, 0, ld.tokens, rl, &mean) / mean;
    double after = eplb_rank_load(p, 0, ld.tokens, rl, &mean) / mean;
    cr_assert_gt(before, 2.0, "contiguous should be badly skewed: %g", before);
    cr_assert_leq(after, 1.15, "busiest/mean %g with R = 8", after);
    placement_table_t t = placement_table(p, 0);
    cr_assert_gt(t.off[1] - t.off[0], 1, "the hottest expert is replicated");
    cr_assert_eq(t.off[16] - t.off[15], 1, "the coldest is not");
    placement_free(p);
    placement_free(base);
    eplb_load_free(&ld);
}

Test(eplb, redundant_beyond_the_ranks_is_refused) {
    eplb_load_t ld = zipf_load(1, 8, 1.0, 3);
    spex_err_t err = {{0}};
    placement_t *base = placement_balanced(8, 3, PLACEMENT_CONTIGUOUS, &err);
    cr_assert_eq(eplb_max_redundant(8, 3), 8);
    placement_t *p = eplb_derive(&ld, base, 8, &err);
    cr_assert(p, "%s", err.msg);
    placement_free(p);
    cr_assert_null(eplb_derive(&ld, base, 9, &err));
    cr_assert(strstr(err.msg, "--redundant 9") && strstr(err.msg, "at most 8"), "%s", err.msg);
    placement_free(base);
    base = placement_balanced(8, 2, PLACEMENT_CONTIGUOUS, &err);
    cr_assert_null(eplb_derive(&ld, base, 1, &err), "one worker cannot hold a replica");
    cr_assert(strstr(err.msg, "at most 0"), "%s", err.msg);
    placement_free(base);
    eplb_load_free(&ld);
}

static spex_config_t tiny_cfg(void) {   /* 4 layers (first dense, last MTP), 16 experts */
    spex_config_t c = {0};
    c.num_hidden_layers = 3;
    c.num_nextn_predict_layers = 1;
    c.first_k_dense_replace = 1;
    c.n_routed_experts = 16;
    c.moe_layer_freq = 1;
    return c;
}

static void expect_load_error(const char *json, const char *want) {
    spex_config_t c = tiny_cfg();
    eplb_load_t ld;
    spex_err_t err = {{0}};
    cr_assert_neq(eplb_load_parse(json, "ep.json", &c, &ld, &err), 0, "accepted %s", json);
    cr_assert(strstr(err.msg, want), "%s: got '%s', want '%s'", json, err.msg, want);
    cr_assert(strstr(err.msg, "stats 'ep.json'"), "does not name the file: %s", err.msg);
}

#define T16 "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]"

Test(eplb, load_from_stats) {
    spex_config_t c = tiny_cfg();
    eplb_load_t ld;
    spex_err_t err = {{0}};
    const char *j = "{\"world\": 3, \"expert_load\": [{\"layer\": 2, \"tokens_per_expert\": " T16 "}]}";
    cr_assert_eq(eplb_load_parse(j, "ep.json", &c, &ld, &err), 0, "%s", err.msg);
    cr_assert(!ld.measured[1] && ld.measured[2] && !ld.measured[3]);
    cr_assert_eq(ld.tokens[2 * 16 + 15], 16.0);
    eplb_load_free(&ld);
    j = "{\"expert_parallelism\": {\"expert_load\": [{\"layer\": 3, \"tokens_per_expert\": " T16 "}]}}";
    cr_assert_eq(eplb_load_parse(j, "gen.json", &c, &ld, &err), 0, "generate --stats nests it: %s", err.msg);
    cr_assert(ld.measured[3]);
    eplb_load_free(&ld);
}

Test(eplb, bad_stats_name_file_and_field) {
    expect_load_error("{\"expert_load\": [", "not valid JSON");
    expect_load_error("{\"total\": {}}", "no \"expert_load\"");
    expect_load_error("{\"expert_load\": []}", "empty");
    expect_load_error("{\"expert_load\": [{\"layer\": 1, \"tokens_per_expert\": [1,2,3]}]}",
                      "expert_load[0].tokens_per_expert has 3 entries, the model has 16 routed experts (stats of another model?)");
    expect_load_error("{\"expert_load\": [{\"layer\": 0, \"tokens_per_expert\": " T16 "}]}",
                      "expert_load[0].layer 0: the model has no MoE layer 0");
    expect_load_error("{\"expert_load\": [{\"layer\": 1, \"tokens_per_expert\": " T16 "}, {\"layer\": 9, "
                      "\"tokens_per_expert\": " T16 "}]}", "expert_load[1].layer 9: the model has no MoE layer 9");
    expect_load_error("{\"expert_load\": [{\"layer\": 1.5, \"tokens_per_expert\": " T16 "}]}",
                      "expert_load[0].layer: expected an integer");
    expect_load_error("{\"expert_load\": [{\"layer\": 1, \"tokens_per_expert\": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,-1,16]}]}",
                      "expert_load[0].tokens_per_expert[14]: expected a count >= 0");
    expect_load_error("{\"expert_load\": [{\"layer\": 1, \"tokens_per_expert\": " T16 "}, {\"layer\": 1, "
                      "\"tokens_per_expert\": " T16 "}]}", "expert_load[1].layer 1: listed twice");
}
