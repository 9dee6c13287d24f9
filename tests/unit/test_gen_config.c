/* test_gen_config.c - generation_config.json and the stop-token set.
 *
 * 1. Parsing (coordinator/decode/gen_config.h): every field read, eos_token_id
 *    as an integer or a list, null as absent, a missing file as no defaults;
 *    bad JSON, wrong types and ranges are errors naming the file and field.
 * 2. The engine stops on any id of an eos list, at the first one emitted, with
 *    speculation (K = 1..4) exactly where it stops without it: the stop check
 *    is on emitted tokens, so speculation stays lossless. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coordinator/decode/gen_config.h"
#include "coordinator/decode/generate.h"
#include "testutil.h"

/* A directory holding generation_config.json = text (NULL: no file); returns its path in dir. */
static void write_dir(char *dir, size_t cap, const char *text) {
    snprintf(dir, cap, "/tmp/spex-genconf-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    if (!text) return;
    char path[1100];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void remove_dir(const char *dir) {
    char path[1100];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    unlink(path);
    rmdir(dir);
}

static int load(const char *text, int vocab, gen_config_t *gc, spex_err_t *err) {
    char dir[64];
    write_dir(dir, sizeof dir, text);
    int rc = gen_config_load(dir, vocab, gc, err);
    remove_dir(dir);
    return rc;
}

Test(gen_config, reads_every_field) {
    gen_config_t gc;
    spex_err_t err = {0};
    cr_assert_eq(load("{\"temperature\": 0.6, \"top_p\": 0.95, \"top_k\": 20, \"max_new_tokens\": 30, "
                      "\"eos_token_id\": [7, 9, 7], \"bos_token_id\": 0, \"pad_token_id\": null, \"do_sample\": true, "
                      "\"transformers_version\": \"4.46\"}", 100, &gc, &err), 0, "%s", err.msg);
    cr_assert(gc.found && gc.has_temperature && gc.has_top_p && gc.has_top_k && gc.has_max_new_tokens);
    cr_assert_float_eq(gc.temperature, 0.6, 1e-12);
    cr_assert_float_eq(gc.top_p, 0.95, 1e-12);
    cr_assert_eq(gc.top_k, 20);
    cr_assert_eq(gc.max_new_tokens, 30);
    cr_assert_eq(gc.eos.n, 2, "duplicates count once");
    cr_assert(eos_set_has(&gc.eos, 7) && eos_set_has(&gc.eos, 9) && !eos_set_has(&gc.eos, 8));
    cr_assert_eq(gc.bos_id, 0);
    cr_assert_eq(gc.pad_id, -1);
}

Test(gen_config, single_eos_and_missing_file) {
    gen_config_t gc;
    spex_err_t err = {0};
    cr_assert_eq(load("{\"eos_token_id\": 1}", 0, &gc, &err), 0, "%s", err.msg);
    cr_assert(gc.eos.n == 1 && gc.eos.id[0] == 1 && !gc.has_temperature);
    cr_assert_eq(load(NULL, 0, &gc, &err), 0, "%s", err.msg);
    cr_assert(!gc.found && gc.eos.n == 0 && !gc.has_top_p);
}

Test(gen_config, errors_name_the_file_and_field) {
    static const struct { const char *text, *want; } cases[] = {
        {"{\"temperature\": \"hot\"}", "field 'temperature': must be a number"},
        {"{\"temperature\": -1}", "field 'temperature': must be in"},
        {"{\"top_p\": 0}", "field 'top_p': must be in (0, 1]"},
        {"{\"top_k\": 2.5}", "field 'top_k': must be an integer"},
        {"{\"max_new_tokens\": 0}", "field 'max_new_tokens': must be in [1,"},
        {"{\"eos_token_id\": \"2\"}", "field 'eos_token_id': must be an integer or a list"},
        {"{\"eos_token_id\": [1, 200]}", "field 'eos_token_id': must be in [0, 99], got 200"},
        {"{\"eos_token_id\": [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]}", "field 'eos_token_id': at most 16"},
        {"{\"bos_token_id\": true}", "field 'bos_token_id': must be an integer"},
        {"{\"temperature\": 0,", "not valid JSON"},
        {"[1]", "must hold a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gen_config_t gc;
        spex_err_t err = {0};
        cr_assert_eq(load(cases[i].text, 100, &gc, &err), -1, "%s: accepted", cases[i].text);
        cr_assert(strstr(err.msg, "generation_config.json") && strstr(err.msg, cases[i].want), "%s: '%s'",
                  cases[i].text, err.msg);
    }
}

/* ---------------------------------------------------------------- 2. the engine */

static int run(model_t *m, const int32_t *prompt, int n, const seq_params_t *p, int32_t *out, const char **why) {
    int32_t *gen;
    int n_gen;
    gen_stats_t st;
    spex_err_t err = {0};
    cr_assert_eq(generate(m, prompt, n, p, NULL, NULL, &gen, &n_gen, &st, &err), 0, "%s", err.msg);
    memcpy(out, gen, sizeof(int32_t) * (size_t)n_gen);
    free(gen);
    *why = st.finish_reason;
    return n_gen;
}

Test(gen_config, eos_list_stops_at_the_same_token_with_speculation, .timeout = 120) {
    char dir[1024], path[1100];
    test_data_path(dir, sizeof dir, "golden");
    snprintf(path, sizeof path, "%s/tiny-f32", dir);
    spex_err_t err = {0};
    model_t *m = model_load(path, NULL, &err);
    cr_assert_not_null(m, "%s", err.msg);
    int32_t prompt[5] = {5, 17, 42, 7, 3}, base[40], out[40];
    const char *why;
    seq_params_t p = {.max_new_tokens = 40, .sampling = {.top_p = 1.0f}};
    int nb = run(m, prompt, 5, &p, base, &why);
    cr_assert_eq(nb, 40);
    /* stop ids: one never generated, and the first new token at index >= 3 */
    int k = 3;
    for (bool seen = true; seen && k < nb; k += seen) {
        seen = false;
        for (int i = 0; i < k; i++) seen |= base[i] == base[k];
    }
    cr_assert_lt(k, nb, "no fresh token to stop on");
    for (int32_t never = 0; never < m->cfg.vocab_size; never++) {
        bool used = false;
        for (int i = 0; i < nb; i++) used |= base[i] == never;
        if (!used) { eos_set_add(&p.eos, never); break; }
    }
    eos_set_add(&p.eos, base[k]);
    for (int K = 0; K <= 4; K++) {
        p.spec_k = K;
        int n = run(m, prompt, 5, &p, out, &why);
        cr_assert_eq(n, k + 1, "spec-k %d: %d tokens, want %d (stop at token %d)", K, n, k + 1, base[k]);
        cr_assert_str_eq(why, "stop");
        for (int i = 0; i < n; i++) cr_assert_eq(out[i], base[i], "spec-k %d: token %d", K, i);
    }
    model_free(m);
}
