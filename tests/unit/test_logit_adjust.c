/* test_logit_adjust.c - logit_bias, presence / frequency penalties
 * (coordinator/decode/logit_adjust.h) and token logprobs
 * (coordinator/decode/token_logprobs.h) against naive references written
 * straight from OpenAI's formulas: counts by a double loop over the
 * history, log probabilities by a full sort of the distribution. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/decode/logit_adjust.h"
#include "coordinator/decode/token_logprobs.h"

#define V 50

static uint64_t lcg(uint64_t *s) { return *s = *s * 6364136223846793005ull + 1442695040888963407ull; }

/* mu[j] - c[j] * freq - (c[j] > 0) * pres + bias[j], c over hist then ext. */
static void naive_adjust(const logit_adjust_t *a, const int32_t *hist, int nh, const int32_t *ext, int ne,
                         float *logits) {
    for (int i = 0; i < a->n_bias; i++) logits[a->bias[i].id] += a->bias[i].bias;
    for (int j = 0; j < V; j++) {
        int c = 0;
        for (int i = 0; i < nh; i++) c += hist[i] == j;
        for (int i = 0; i < ne; i++) c += ext[i] == j;
        if (c > 0) logits[j] -= (float)c * a->frequency + a->presence;
    }
}

Test(logit_adjust, matches_the_openai_formula) {
    uint64_t seed = 7;
    int32_t *counts = calloc(V, sizeof *counts);
    for (int trial = 0; trial < 200; trial++) {
        float logits[V], want[V];
        for (int j = 0; j < V; j++) logits[j] = want[j] = (float)(lcg(&seed) % 2000) / 100.0f - 10.0f;
        int32_t hist[40], ext[8];
        int nh = (int)(lcg(&seed) % 40), ne = (int)(lcg(&seed) % 8);
        for (int i = 0; i < nh; i++) hist[i] = (int32_t)(lcg(&seed) % 12);   /* repeats */
        for (int i = 0; i < ne; i++) ext[i] = (int32_t)(lcg(&seed) % 12);
        logit_bias_entry_t bias[3] = {{(int32_t)(lcg(&seed) % V), -100.0f}, {3, 2.5f}, {(int32_t)(lcg(&seed) % V), 7}};
        logit_adjust_t a = {.presence = (float)(lcg(&seed) % 5) / 2.0f - 1.0f,
                            .frequency = (float)(lcg(&seed) % 5) / 2.0f - 1.0f, .bias = bias,
                            .n_bias = (int)(lcg(&seed) % 4)};
        cr_assert_null(logit_adjust_check(&a, V, NULL));
        naive_adjust(&a, hist, nh, ext, ne, want);
        logit_adjust_apply(&a, hist, nh, ext, ne, counts, logits);
        cr_assert_arr_eq(logits, want, sizeof logits, "trial %d", trial);
        for (int j = 0; j < V; j++) cr_assert_eq(counts[j], 0, "the counts scratch is left zero");
    }
    free(counts);
}

Test(logit_adjust, checks_name_the_field) {
    const char *field = NULL;
    logit_adjust_t a = {.presence = 2.5f};
    cr_assert_not_null(logit_adjust_check(&a, V, &field));
    cr_assert_str_eq(field, "presence_penalty");
    a = (logit_adjust_t){.frequency = -3};
    cr_assert_not_null(logit_adjust_check(&a, V, &field));
    cr_assert_str_eq(field, "frequency_penalty");
    logit_bias_entry_t b = {V, 1};
    a = (logit_adjust_t){.bias = &b, .n_bias = 1};
    cr_assert_not_null(logit_adjust_check(&a, V, &field));
    cr_assert_str_eq(field, "logit_bias");
    cr_assert_not(logit_adjust_active(&(logit_adjust_t){0}));
}

/* Reference: the full distribution, every token's log probability, sorted by (lp desc, id asc). */
typedef struct { double lp; int id; } ref_t;
static int ref_cmp(const void *x, const void *y) {
    const ref_t *a = x, *b = y;
    if (a->lp != b->lp) return a->lp < b->lp ? 1 : -1;
    return a->id - b->id;
}

static void check_logprobs(const sampling_params_t *sp, const float *logits, int32_t tok, int n_top) {
    float scratch[V], probs[V];
    token_logprob_t got;
    token_logprob_fill(sp, logits, V, tok, n_top, scratch, &got);
    ref_t ref[V];
    if (sp->temperature > 0) {
        sampler_probs(sp, logits, V, probs);   /* the distribution sampled from */
        for (int j = 0; j < V; j++) ref[j] = (ref_t){probs[j] > 0 ? log(probs[j]) : -9999.0, j};
    } else {
        double mx = -INFINITY, z = 0;
        for (int j = 0; j < V; j++) mx = fmax(mx, logits[j]);
        for (int j = 0; j < V; j++) z += exp(logits[j] - mx);
        for (int j = 0; j < V; j++) ref[j] = (ref_t){logits[j] - mx - log(z), j};
    }
    cr_assert_float_eq(got.logprob, ref[tok].lp, 1e-5, "token %d: %g vs %g", tok, got.logprob, ref[tok].lp);
    qsort(ref, V, sizeof *ref, ref_cmp);
    cr_assert_eq(got.n_top, n_top);
    for (int k = 0; k < n_top; k++) {
        cr_assert_float_eq(got.top_logprob[k], ref[k].lp, 1e-5, "rank %d", k);
        if (k == 0 || ref[k].lp != ref[k - 1].lp) cr_assert_eq(got.top_id[k], ref[k].id, "rank %d", k);
    }
}

Test(token_logprobs, match_the_sampled_distribution) {
    uint64_t seed = 3;
    for (int trial = 0; trial < 100; trial++) {
        float logits[V];
        for (int j = 0; j < V; j++) logits[j] = (float)(lcg(&seed) % 1000) / 100.0f;
        sampling_params_t sps[] = {{.temperature = 0, .top_p = 1}, {.temperature = 1, .top_p = 1},
                                   {.temperature = 0.7f, .top_k = 5, .top_p = 1},
                                   {.temperature = 1.3f, .top_p = 0.5f}};
        for (size_t i = 0; i < sizeof sps / sizeof sps[0]; i++)
            check_logprobs(&sps[i], logits, (int32_t)(lcg(&seed) % V), (int)(lcg(&seed) % (SPEX_MAX_TOP_LOGPROBS + 1)));
    }
}

Test(token_logprobs, outside_the_nucleus_is_the_floor) {
    float logits[V] = {0};
    logits[4] = 10;
    logits[9] = 9;
    sampling_params_t sp = {.temperature = 1, .top_k = 2, .top_p = 1};
    float scratch[V];
    token_logprob_t got;
    token_logprob_fill(&sp, logits, V, 0, 3, scratch, &got);
    cr_assert_float_eq(got.logprob, LOGPROB_FLOOR, 0);
    cr_assert_eq(got.top_id[0], 4);
    cr_assert_eq(got.top_id[1], 9);
    cr_assert_float_eq(got.top_logprob[2], LOGPROB_FLOOR, 0);
    cr_assert_eq(got.top_id[2], 0, "ties: the lowest id");
}
