/* test_placement.c - coordinator/placement: the balanced policies, the JSON
 * table (numbers or lists of ranks, replicas), every error naming the expert
 * or rank at fault (bad JSON, unhosted expert, rank 0, rank outside the job,
 * duplicates, too many entries), and the replica choice: deterministic by row
 * and spread evenly over the replicas; per-layer tables (parse, print,
 * round trip, errors naming the layer). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/ep/placement.h"

static int hosts(const placement_t *p, int e) { return p->off[e + 1] - p->off[e]; }

Test(placement, contiguous_is_balanced_blocks) {
    spex_err_t err = {{0}};
    placement_t *p = placement_balanced(16, 4, PLACEMENT_CONTIGUOUS, &err);   /* 3 workers */
    cr_assert(p, "%s", err.msg);
    int count[4] = {0}, ex[16];
    for (int e = 0; e < 16; e++) {
        cr_assert_eq(hosts(p, e), 1);
        int r = placement_pick(p, 0, e, 0);
        cr_assert(r >= 1 && r <= 3);
        if (e > 0) cr_assert_geq(r, placement_pick(p, 0, e - 1, 0), "not contiguous at %d", e);
        count[r]++;
    }
    for (int r = 1; r <= 3; r++) cr_assert(count[r] == 5 || count[r] == 6, "rank %d has %d", r, count[r]);
    cr_assert_eq(placement_rank_experts(p, 1, ex), count[1]);
    cr_assert_eq(ex[0], 0);
    placement_free(p);
}

Test(placement, round_robin) {
    spex_err_t err = {{0}};
    placement_t *p = placement_balanced(10, 5, PLACEMENT_ROUND_ROBIN, &err);
    cr_assert(p);
    for (int e = 0; e < 10; e++) cr_assert_eq(placement_pick(p, 0, e, 7), 1 + e % 4);
    placement_free(p);
    placement_policy_t pol;
    cr_assert_eq(placement_policy_parse("round-robin", &pol, &err), 0);
    cr_assert_eq(pol, PLACEMENT_ROUND_ROBIN);
    cr_assert_neq(placement_policy_parse("random", &pol, &err), 0);
    cr_assert(strstr(err.msg, "'random'"), "%s", err.msg);
    cr_assert_null(placement_balanced(4, 1, PLACEMENT_CONTIGUOUS, &err));
    cr_assert(strstr(err.msg, "no worker rank"), "%s", err.msg);
}

Test(placement, json_with_replicas) {
    spex_err_t err = {{0}};
    placement_t *p = placement_parse("{\"placement\": [1, [2], [3, 1], 2, [1,2,3], 1]}", "t", 6, 4, &err);
    cr_assert(p, "%s", err.msg);
    cr_assert_eq(hosts(p, 2), 2);
    cr_assert_eq(p->ranks[p->off[2]], 1, "replica list is sorted");
    cr_assert_eq(p->ranks[p->off[2] + 1], 3);
    cr_assert_eq(hosts(p, 4), 3);
    int seen[4] = {0};
    for (int row = 0; row < 30; row++) {
        int r = placement_pick(p, 0, 4, row);
        cr_assert_eq(r, placement_pick(p, 0, 4, row), "deterministic");
        seen[r]++;
    }
    cr_assert(seen[1] == 10 && seen[2] == 10 && seen[3] == 10, "spread %d %d %d", seen[1], seen[2], seen[3]);
    int ex[6];
    cr_assert_eq(placement_rank_experts(p, 1, ex), 4);   /* 0, 2, 4, 5 */
    cr_assert_eq(ex[1], 2);
    char *buf;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    placement_print_json(p, f);
    fclose(f);
    cr_assert_str_eq(buf, "{\"world\":4,\"placement\":[[1],[2],[1,3],[2],[1,2,3],[1]]}\n");
    placement_t *q = placement_parse(buf, "round trip", 6, 4, &err);
    cr_assert(q, "%s", err.msg);
    cr_assert_eq(memcmp(q->ranks, p->ranks, sizeof(int) * (size_t)p->off[6]), 0);
    placement_free(q);
    free(buf);
    placement_free(p);
}

static void expect_error(const char *json, int n_experts, int world, const char *want) {
    spex_err_t err = {{0}};
    placement_t *p = placement_parse(json, "file.json", n_experts, world, &err);
    cr_assert_null(p, "accepted %s", json);
    cr_assert(strstr(err.msg, want), "%s: got '%s', want '%s'", json, err.msg, want);
    cr_assert(strstr(err.msg, "file.json"), "error does not name the file: %s", err.msg);
}

Test(placement, errors_name_the_culprit) {
    expect_error("{\"placement\": [1, 2", 3, 3, "not valid JSON");
    expect_error("{\"placement\": [1, 2, 1]} [1]", 3, 3, "not valid JSON");   /* trailing garbage */
    expect_error("[1, 2, 1]", 3, 3, "expected {\"placement\"");
    expect_error("{\"placement\": [1, 2]}", 3, 3, "expert 2 is not hosted");
    expect_error("{\"placement\": [1, [], 2]}", 3, 3, "expert 1 is not hosted");
    expect_error("{\"placement\": [1, 0, 2]}", 3, 3, "expert 1: rank 0 is the coordinator");
    expect_error("{\"placement\": [1, 2, 3]}", 3, 3, "expert 2: rank 3 is outside the job's worker ranks 1..2");
    expect_error("{\"placement\": [1, [2, 2], 1]}", 3, 4, "expert 1: rank 2 listed twice");
    expect_error("{\"placement\": [1, 2.5, 1]}", 3, 3, "expert 1: ranks must be integers");
    expect_error("{\"placement\": [1, \"x\", 1]}", 3, 3, "expert 1: expected a rank");
    expect_error("{\"placement\": [1, 1, 1, 1]}", 3, 3, "4 entries but the model has 3");
}

Test(placement, trailing_whitespace_is_fine) {
    spex_err_t err = {{0}};
    placement_t *p = placement_parse("{\"placement\": [1, 2, 1]}\n\n  ", "t", 3, 3, &err);
    cr_assert_not_null(p, "%s", err.msg);
    placement_free(p);
}

Test(placement, load_missing_file) {
    spex_err_t err = {{0}};
    cr_assert_null(placement_load("/nonexistent/p.json", 4, 3, &err));
    cr_assert(strstr(err.msg, "/nonexistent/p.json"), "%s", err.msg);
}

Test(placement, per_layer_tables) {
    spex_err_t err = {{0}};
    const char *json = "{\"world\": 3, \"placement\": [1, 1, 2, 2],"
                       " \"layers\": [{\"layer\": 2, \"placement\": [[1, 2], 2, 1, 1]}], \"eplb\": {\"ignored\": 1}}";
    placement_t *p = placement_parse(json, "t", 4, 3, &err);
    cr_assert(p, "%s", err.msg);
    cr_assert_eq(placement_max_layer(p), 2);
    cr_assert_eq(placement_pick(p, 1, 1, 0), 1, "layer 1 uses the default table");
    cr_assert_eq(placement_pick(p, 7, 1, 0), 1, "layers past the last table use the default");
    cr_assert_eq(placement_pick(p, 2, 1, 0), 2, "layer 2 has its own table");
    cr_assert_eq(placement_pick(p, 2, 0, 0), 1);
    cr_assert_eq(placement_pick(p, 2, 0, 1), 2, "replica by row");
    int ex[4];
    cr_assert_eq(placement_rank_layer_experts(p, 2, 1, ex), 3);   /* 0, 2, 3 */
    cr_assert_eq(placement_rank_layer_experts(p, 0, 1, ex), 2);   /* 0, 1 */
    cr_assert_eq(placement_rank_experts(p, 1, ex), 4, "the union over layers");
    char *buf;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    placement_print_json(p, f);
    fclose(f);
    cr_assert_str_eq(buf, "{\"world\":3,\"placement\":[[1],[1],[2],[2]],"
                          "\"layers\":[{\"layer\":2,\"placement\":[[1,2],[2],[1],[1]]}]}\n");
    placement_t *q = placement_parse(buf, "round trip", 4, 3, &err);
    cr_assert(q, "%s", err.msg);
    for (int e = 0; e < 4; e++)
        for (int row = 0; row < 3; row++)
            for (int l = 0; l < 4; l++) cr_assert_eq(placement_pick(q, l, e, row), placement_pick(p, l, e, row));
    placement_free(q);
    free(buf);
    placement_free(p);
}

Test(placement, set_layer_checks_the_table) {
    spex_err_t err = {{0}};
    placement_t *p = placement_balanced(3, 3, PLACEMENT_CONTIGUOUS, &err);
    int off[4] = {0, 1, 3, 3}, ranks[3] = {1, 1, 2};
    cr_assert_neq(placement_set_layer(p, 1, off, ranks, &err), 0);
    cr_assert(strstr(err.msg, "layer 1: expert 2 is not hosted"), "%s", err.msg);
    int off2[4] = {0, 1, 3, 4}, bad[4] = {1, 2, 1, 1};
    cr_assert_neq(placement_set_layer(p, 1, off2, bad, &err), 0);
    cr_assert(strstr(err.msg, "not ascending"), "%s", err.msg);
    int good[4] = {1, 1, 2, 2};
    cr_assert_eq(placement_set_layer(p, 1, off2, good, &err), 0, "%s", err.msg);
    cr_assert_eq(placement_pick(p, 1, 1, 1), 2);
    cr_assert_eq(placement_pick(p, 0, 1, 1), 1);
    placement_free(p);
}

Test(placement, per_layer_errors_name_the_layer) {
    expect_error("{\"placement\": [1, 2, 1], \"layers\": [{\"layer\": 1, \"placement\": [1, 2]}]}", 3, 3,
                 "layer 1: expert 2 is not hosted");
    expect_error("{\"placement\": [1, 2, 1], \"layers\": [{\"layer\": 1, \"placement\": [1, 2, 1]},"
                 " {\"layer\": 1, \"placement\": [1, 2, 1]}]}", 3, 3, "layer 1: listed twice");
    expect_error("{\"placement\": [1, 2, 1], \"layers\": [{\"layer\": -1, \"placement\": [1, 2, 1]}]}", 3, 3,
                 "integer \"layer\"");
    expect_error("{\"placement\": [1, 2, 1], \"layers\": {\"1\": [1, 2, 1]}}", 3, 3, "\"layers\": expected a list");
    expect_error("{\"placement\": [1, 2, 1], \"layers\": [{\"layer\": 2, \"placement\": 3}]}", 3, 3,
                 "layer 2: expected a list");
    expect_error("{\"placement\": [1, 2, 1], \"layers\": [{\"layer\": 2, \"placement\": [1, 5, 1]}]}", 3, 3,
                 "layer 2: expert 1: rank 5 is outside");
}
