/* fuzz_placement.c - libFuzzer harness for coordinator/ep/placement.c:
 * placement_parse() of a --placement file (the old format, a flat table, and
 * version 2 with per-layer tables), then every lookup the coordinator makes on
 * a table it accepted (each expert hosted by a rank in 1..world-1) and the
 * JSON written back. Seeds: tests/fuzz/corpus/placement/, dictionary
 * tests/fuzz/dict/placement.dict. */
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "coordinator/ep/placement.h"
#include "fuzz_util.h"

enum { N_EXPERTS = 16, WORLD = 5 };

static void exercise(const placement_t *p) {
    int out[N_EXPERTS * WORLD + 1];
    int max_layer = placement_max_layer(p);
    for (int r = 0; r < WORLD; r++) (void)placement_rank_experts(p, r, out);
    for (int l = 0; l <= max_layer && l < 64; l++) {
        placement_table_t t = placement_table(p, l);
        for (int e = 0; e < N_EXPERTS; e++) {
            if (t.off[e + 1] <= t.off[e]) abort();   /* every expert hosted */
            for (int row = 0; row < 3; row++) {
                int r = placement_pick(p, l, e, row);
                if (r < 1 || r >= WORLD) abort();
            }
        }
        for (int r = 0; r < WORLD; r++) (void)placement_rank_layer_experts(p, l, r, out);
    }
    cJSON *j = placement_to_cjson(p);
    cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *json = fuzz_cstr(data, n);
    spex_err_t err = {{0}};
    placement_t *p = placement_parse(json, "fuzz/placement.json", N_EXPERTS, WORLD, &err);
    if (p) exercise(p);
    else if (!err.msg[0]) abort();
    placement_free(p);
    free(json);
    return 0;
}
