/* test_spec.c - speculative decoding never changes the output.
 *
 * 1. Greedy: generation with --spec-k 1..4 is token-for-token identical to
 *    --spec-k 0 on every golden checkpoint, over several prompts.
 * 2. The verification rule itself (spec_verify) on a 6-token vocabulary with
 *    chosen target p and draft q: the first emitted token is distributed as p1,
 *    and, when the first draft was accepted, the second as p2 — for sampled
 *    drafts with q near p, q far from p, and argmax drafts. Chi-square
 *    goodness of fit, 60000 trials each.
 * 3. End to end with a model: the first two generated tokens (temperature 1,
 *    top-k 3) have the same distribution with and without speculation (sampled
 *    and argmax drafts): chi-square homogeneity over 3000 seeds per arm.
 * 4. With logit_bias and presence / frequency penalties (the drafter and the
 *    verifier adjust the same way, a draft's history including the drafts
 *    before it): greedy output is identical for spec_k 0, 2 and 4, and the
 *    first two sampled tokens keep their distribution (sampled and argmax drafts).
 * Critical values are chi-square quantiles at alpha = 1e-4 (Wilson-Hilferty):
 * with seeds drawn afresh, each check would fail falsely 1 time in 10^4. The
 * seeds are fixed, so the test is deterministic. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/decode/generate.h"
#include "coordinator/decode/spec_verify.h"
#include "core/kernels.h"
#include "testutil.h"

/* Chi-square quantile at 1 - 1e-4 for df degrees of freedom (Wilson-Hilferty). */
static double chi2_crit(int df) {
    double z = 3.719, a = 2.0 / (9.0 * df);
    return df * pow(1.0 - a + z * sqrt(a), 3);
}

static model_t *load_golden(const char *name) {
    char dir[1024], path[1100];
    test_data_path(dir, sizeof dir, "golden");
    snprintf(path, sizeof path, "%s/%s", dir, name);
    spex_err_t err = {0};
    model_t *m = model_load(path, NULL, &err);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

static int run(model_t *m, const int32_t *prompt, int n, seq_params_t *p, int32_t *out, int cap) {
    int32_t *gen;
    int n_gen;
    gen_stats_t st;
    spex_err_t err = {0};
    cr_assert_eq(generate(m, prompt, n, p, NULL, NULL, &gen, &n_gen, &st, &err), 0, "%s", err.msg);
    cr_assert_leq(n_gen, cap);
    memcpy(out, gen, sizeof(int32_t) * (size_t)n_gen);
    free(gen);
    return n_gen;
}

/* ---------------------------------------------------------------- 1. greedy */

static void greedy_identity(const char *name) {
    model_t *m = load_golden(name);
    int32_t prompt[16], base[64], spec[64];
    for (int trial = 0; trial < 6; trial++) {
        int n = 1 + trial * 2;
        for (int i = 0; i < n; i++) prompt[i] = (int32_t)((trial * 97 + i * 31 + 5) % m->cfg.vocab_size);
        seq_params_t p = {.max_new_tokens = 40, .sampling = {.top_p = 1.0f}};
        int nb = run(m, prompt, n, &p, base, 64);
        for (int k = 1; k <= 4; k++) {
            p.spec_k = k;
            int ns = run(m, prompt, n, &p, spec, 64);
            cr_assert_eq(ns, nb, "%s prompt %d spec-k %d: %d tokens vs %d", name, trial, k, ns, nb);
            for (int i = 0; i < nb; i++)
                cr_assert_eq(spec[i], base[i], "%s prompt %d spec-k %d: token %d is %d, want %d", name, trial, k, i,
                             spec[i], base[i]);
        }
        /* adaptive draft length: fewer drafts, the same tokens */
        for (int a = 1; a <= 3; a++) {
            p.spec_k = 4;
            p.draft_min_p = (float)a / 3.0f;
            int ns = run(m, prompt, n, &p, spec, 64);
            cr_assert_eq(ns, nb, "%s prompt %d draft_min_p %.2f: %d tokens vs %d", name, trial, p.draft_min_p, ns, nb);
            cr_assert_eq(memcmp(spec, base, sizeof(int32_t) * (size_t)nb), 0, "%s prompt %d draft_min_p %.2f differs",
                         name, trial, p.draft_min_p);
        }
        p.draft_min_p = 0;
    }
    model_free(m);
}

Test(spec, adaptive_draft_length_stops_early) {
    /* draft_min_p 1: no draft is ever certain enough to draft after it, so only
     * position 1 is ever verified; 0: every step drafts spec_k (room permitting). */
    model_t *m = load_golden("tiny-f32");
    int32_t prompt[3] = {5, 17, 42};
    for (int a = 0; a <= 1; a++) {
        seq_params_t p = {.max_new_tokens = 30, .spec_k = 3, .draft_min_p = (float)a, .sampling = {.top_p = 1.0f}};
        int32_t *gen;
        int n;
        gen_stats_t st;
        spex_err_t err = {0};
        cr_assert_eq(generate(m, prompt, 3, &p, NULL, NULL, &gen, &n, &st, &err), 0, "%s", err.msg);
        free(gen);
        if (a) cr_assert(st.spec.proposed <= st.spec.steps && st.spec.drafted_at[1] == 0,
                         "draft_min_p 1: %ld drafts in %ld steps", st.spec.proposed, st.spec.steps);
        else cr_assert(st.spec.proposed > 2 * st.spec.steps, "draft_min_p 0: %ld drafts in %ld steps",
                       st.spec.proposed, st.spec.steps);
    }
    seq_params_t bad = {.max_new_tokens = 3, .spec_k = 2, .draft_min_p = 1.5f, .sampling = {.top_p = 1.0f}};
    int32_t *gen;
    int n;
    gen_stats_t st;
    spex_err_t err = {0};
    cr_assert_neq(generate(m, prompt, 3, &bad, NULL, NULL, &gen, &n, &st, &err), 0);
    cr_assert(strstr(err.msg, "draft_min_p"), "%s", err.msg);
    model_free(m);
}

Test(spec, greedy_identical_f32) { greedy_identity("tiny-f32"); }
Test(spec, greedy_identical_bf16_noq) { greedy_identity("tiny-bf16-noq"); }
Test(spec, greedy_identical_fp8) { greedy_identity("tiny-fp8"); }

/* ---------------------------------------------------------------- 2. the rule */

#define V6 6

static double chi2_fit(const long *obs, const double *p, int V, long n, int *df) {
    double c = 0;
    *df = -1;
    for (int v = 0; v < V; v++) {
        double e = p[v] * n;
        if (e <= 0) { cr_assert_eq(obs[v], 0, "token %d has probability 0 but was emitted", v); continue; }
        c += (obs[v] - e) * (obs[v] - e) / e;
        (*df)++;
    }
    return c;
}

/* logits = log p, so temperature 1 recovers p. */
static void check_rule(const double *p1, const double *p2, const double *q1, const double *q2, bool argmax_drafts) {
    float logits[3 * V6], q[2 * V6], pbuf[V6], rbuf[V6];
    for (int v = 0; v < V6; v++) {
        logits[v] = p1[v] > 0 ? (float)log(p1[v]) : -INFINITY;
        logits[V6 + v] = p2[v] > 0 ? (float)log(p2[v]) : -INFINITY;
        logits[2 * V6 + v] = logits[V6 + v];
        q[v] = (float)q1[v];
        q[V6 + v] = (float)q2[v];
    }
    sampling_params_t sp = {.temperature = 1.0f, .top_p = 1.0f};
    rng_t rng;
    rng_seed(&rng, 42);
    long first[V6] = {0}, second[V6] = {0}, n2 = 0, n = 60000;
    for (long t = 0; t < n; t++) {
        int32_t d[2], next;
        for (int i = 0; i < 2; i++) d[i] = argmax_drafts ? argmax(q + i * V6, V6) : sampler_draw(q + i * V6, V6, &rng);
        int a = spec_verify(&sp, logits, V6, d, 2, argmax_drafts ? NULL : q, &rng, pbuf, rbuf, &next);
        first[a >= 1 ? d[0] : next]++;
        if (a >= 1) { second[a >= 2 ? d[1] : next]++; n2++; }
    }
    int df;
    double c1 = chi2_fit(first, p1, V6, n, &df);
    cr_expect(c1 < chi2_crit(df), "first token: chi2 %.2f >= %.2f (df %d)", c1, chi2_crit(df), df);
    double c2 = chi2_fit(second, p2, V6, n2, &df);
    cr_expect(c2 < chi2_crit(df), "second token: chi2 %.2f >= %.2f (df %d, %ld samples)", c2, chi2_crit(df), df, n2);
}

static const double P1[V6] = {0.40, 0.25, 0.15, 0.10, 0.07, 0.03};
static const double P2[V6] = {0.05, 0.05, 0.50, 0.20, 0.20, 0.0};
static const double Q_NEAR1[V6] = {0.35, 0.30, 0.15, 0.10, 0.05, 0.05};
static const double Q_NEAR2[V6] = {0.10, 0.05, 0.45, 0.20, 0.15, 0.05};
static const double Q_FAR1[V6] = {0.02, 0.03, 0.05, 0.10, 0.30, 0.50};
static const double Q_FAR2[V6] = {0.60, 0.20, 0.05, 0.05, 0.05, 0.05};

Test(spec, rule_sampled_near) { check_rule(P1, P2, Q_NEAR1, Q_NEAR2, false); }
Test(spec, rule_sampled_far) { check_rule(P1, P2, Q_FAR1, Q_FAR2, false); }
Test(spec, rule_argmax_drafts) { check_rule(P1, P2, Q_NEAR1, Q_NEAR2, true); }
Test(spec, rule_argmax_drafts_wrong) { check_rule(P1, P2, Q_FAR1, Q_FAR2, true); }

/* ---------------------------------------------------------------- 3. end to end */

/* Histogram of the first two tokens (pair index t0 * V + t1) over `n` seeds;
 * counts the drafts verified in *drafted (0 would make the check vacuous). */
static void pair_hist_adj(model_t *m, int spec_k, bool sampled, float min_p, int n, const logit_adjust_t *adj,
                          long *hist, long *drafted) {
    int32_t prompt[4] = {5, 17, 42, 3}, out[8];
    int V = m->cfg.vocab_size;
    for (int s = 0; s < n; s++) {
        /* 4 tokens wanted so that the second one comes out of a verify step with drafts */
        seq_params_t p = {.max_new_tokens = 4, .spec_k = spec_k, .sampled_drafts = sampled, .draft_min_p = min_p,
                          .sampling = {.temperature = 1.0f, .top_k = 3, .top_p = 1.0f, .seed = 1000 + (uint64_t)s}};
        if (adj) p.adjust = *adj;
        int32_t *gen;
        int k;
        gen_stats_t st;
        spex_err_t err = {0};
        cr_assert_eq(generate(m, prompt, 4, &p, NULL, NULL, &gen, &k, &st, &err), 0, "%s", err.msg);
        memcpy(out, gen, sizeof(int32_t) * 4);
        free(gen);
        *drafted += st.spec.drafted;
        cr_assert_eq(k, 4);
        hist[(size_t)out[0] * V + out[1]]++;
    }
}

static void pair_hist(model_t *m, int spec_k, bool sampled, float min_p, int n, long *hist, long *drafted) {
    pair_hist_adj(m, spec_k, sampled, min_p, n, NULL, hist, drafted);
}

static void homogeneity(const long *a, const long *b, size_t cells, const char *what) {
    double c = 0;
    int df = -1;
    for (size_t i = 0; i < cells; i++)
        if (a[i] + b[i] > 0) {
            c += (double)(a[i] - b[i]) * (a[i] - b[i]) / (double)(a[i] + b[i]);
            df++;
        }
    fprintf(stderr, "spec e2e %-16s chi2 %.2f  df %d  critical %.2f\n", what, c, df, chi2_crit(df));
    cr_expect(df > 0 && c < chi2_crit(df), "%s: chi2 %.2f >= %.2f (df %d)", what, c, chi2_crit(df), df);
}

Test(spec, sampling_distribution_unchanged, .timeout = 240) {
    model_t *m = load_golden("tiny-f32");
    size_t cells = (size_t)m->cfg.vocab_size * m->cfg.vocab_size;
    long *base = calloc(cells, sizeof(long)), *samp = calloc(cells, sizeof(long)), *amax = calloc(cells, sizeof(long));
    long *adap = calloc(cells, sizeof(long));
    int n = 3000;
    long d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    pair_hist(m, 0, true, 0, n, base, &d0);
    pair_hist(m, 2, true, 0, n, samp, &d1);
    pair_hist(m, 2, false, 0, n, amax, &d2);
    pair_hist(m, 3, true, 0.4f, n, adap, &d3);
    fprintf(stderr, "spec e2e drafts verified: sampled %ld, argmax %ld, adaptive %ld\n", d1, d2, d3);
    cr_assert(d1 >= n && d2 >= n && d3 >= n, "drafts were not exercised");
    homogeneity(base, samp, cells, "sampled drafts");
    homogeneity(base, amax, cells, "argmax drafts");
    homogeneity(base, adap, cells, "adaptive length");
    free(base);
    free(samp);
    free(amax);
    free(adap);
    model_free(m);
}

/* ---------------------------------------------------------------- 4. adjusted logits */

static const logit_bias_entry_t BIAS[] = {{7, 3.0f}, {42, -100.0f}, {100, 1.5f}};

Test(spec, greedy_identical_with_penalties_and_bias) {
    model_t *m = load_golden("tiny-f32");
    logit_adjust_t adj = {.presence = 0.8f, .frequency = 1.5f, .bias = BIAS, .n_bias = 3};
    int32_t prompt[16], plain[64], base[64], spec[64];
    int changed = 0;
    for (int trial = 0; trial < 6; trial++) {
        for (int i = 0; i < 16; i++) prompt[i] = (int32_t)((trial * 31 + i * 7 + 3) % m->cfg.vocab_size);
        seq_params_t p = {.max_new_tokens = 40, .sampling = {.top_p = 1.0f}};
        int np = run(m, prompt, 16, &p, plain, 64);
        p.adjust = adj;
        int nb = run(m, prompt, 16, &p, base, 64);
        changed += np != nb || memcmp(plain, base, sizeof(int32_t) * (size_t)nb) != 0;
        for (int i = 0; i < nb; i++) cr_assert_neq(base[i], 42, "a -100 bias keeps token 42 out");
        for (int k = 2; k <= 4; k += 2) {
            p.spec_k = k;
            int ns = run(m, prompt, 16, &p, spec, 64);
            cr_assert_eq(ns, nb, "trial %d spec_k %d: length %d vs %d", trial, k, ns, nb);
            cr_assert_arr_eq(spec, base, sizeof(int32_t) * (size_t)nb, "trial %d spec_k %d: tokens differ", trial, k);
            p.spec_k = 0;
        }
    }
    cr_assert_gt(changed, 0, "the adjustment never changed the output: the check would be vacuous");
    model_free(m);
}

Test(spec, sampling_distribution_unchanged_with_penalties_and_bias, .timeout = 240) {
    model_t *m = load_golden("tiny-f32");
    logit_adjust_t adj = {.presence = 1.0f, .frequency = 2.0f, .bias = BIAS, .n_bias = 3};
    size_t cells = (size_t)m->cfg.vocab_size * m->cfg.vocab_size;
    long *base = calloc(cells, sizeof(long)), *samp = calloc(cells, sizeof(long)), *amax = calloc(cells, sizeof(long));
    int n = 2000;
    long d0 = 0, d1 = 0, d2 = 0;
    pair_hist_adj(m, 0, true, 0, n, &adj, base, &d0);
    pair_hist_adj(m, 2, true, 0, n, &adj, samp, &d1);
    pair_hist_adj(m, 2, false, 0, n, &adj, amax, &d2);
    cr_assert(d1 >= n && d2 >= n, "drafts were not exercised");
    homogeneity(base, samp, cells, "adjusted, sampled");
    homogeneity(base, amax, cells, "adjusted, argmax");
    free(base);
    free(samp);
    free(amax);
    model_free(m);
}

/* ---------------------------------------------------------------- 5. step row budget */

/* Steps over seqs[0..n) until every one is done. */
static void run_steps(model_t *m, sequence_t **seqs, int n) {
    spex_err_t err = {0};
    for (bool busy = true; busy;) {
        cr_assert_eq(engine_step(m, seqs, n, NULL, NULL, &err), 0, "%s", err.msg);
        busy = false;
        for (int i = 0; i < n; i++) busy |= !seqs[i]->done;
    }
}

static sequence_t *new_seq_t(model_t *m, int which, int max_new, int spec_k, int step_rows, float temp) {
    int32_t prompt[7];
    for (int i = 0; i < 7; i++) prompt[i] = (int32_t)((which * 131 + i * 37 + 3) % m->cfg.vocab_size);
    seq_params_t p = {.max_new_tokens = max_new, .spec_k = spec_k, .spec_step_rows = step_rows,
                      .sampled_drafts = true, .sampling = {.temperature = temp, .top_p = 1.0f, .seed = 7}};
    spex_err_t err = {0};
    sequence_t *s = sequence_create(m, prompt, 3 + which, &p, &err);
    cr_assert_not_null(s, "%s", err.msg);
    return s;
}

static sequence_t *new_seq(model_t *m, int which, int max_new, int spec_k, int step_rows) {
    return new_seq_t(m, which, max_new, spec_k, step_rows, 0.0f);
}

/* With a budget of 4 rows, sequence 0 (40 tokens, spec_k 3) is paused while
 * three short ones run beside it (4 and 3 sequences: 0 drafts), then drafts
 * again alone: its tokens equal spec_k 0's, it both paused and drafted, and
 * its MTP cache rows (caught up from the kept hidden states) are bit for bit
 * those of the same sequence speculating alone from the start. */
Test(spec, step_row_budget_pauses_then_catches_up_exactly) {
    model_t *m = load_golden("tiny-fp8");
    cr_assert_gt(m->n_mtp, 0);
    sequence_t *alone = new_seq(m, 0, 40, 3, 0), *plain = new_seq(m, 0, 40, 0, 0), *b[4];
    run_steps(m, &alone, 1);
    run_steps(m, &plain, 1);
    for (int i = 0; i < 4; i++) b[i] = new_seq(m, i, i == 0 ? 40 : 6 + i, 3, 4);
    run_steps(m, b, 4);
    cr_assert_eq(b[0]->n_out, plain->n_out);
    cr_assert_eq(memcmp(b[0]->out, plain->out, sizeof(int32_t) * (size_t)plain->n_out), 0, "budgeted tokens differ");
    cr_assert_eq(memcmp(alone->out, plain->out, sizeof(int32_t) * (size_t)plain->n_out), 0, "spec tokens differ");
    cr_assert_lt(b[0]->stats.proposed, 3 * b[0]->stats.steps - 6, "never paused: %ld drafts in %ld steps",
                 b[0]->stats.proposed, b[0]->stats.steps);
    cr_assert_gt(b[0]->stats.proposed, 0, "never drafted after the others finished");
    int L = m->cfg.num_hidden_layers, n = b[0]->kv->len[L] < alone->kv->len[L] ? b[0]->kv->len[L] : alone->kv->len[L];
    cr_assert_geq(n, 3 + 30, "MTP rows held: %d", n);
    size_t row = (size_t)alone->kv->width;
    cr_assert_eq(memcmp(b[0]->kv->rows[L], alone->kv->rows[L], sizeof(float) * row * (size_t)n), 0,
                 "MTP cache rows differ after the catch-up");
    for (int i = 1; i < 4; i++) {   /* capped to 0 drafts throughout: spec_k 0's tokens */
        sequence_t *ref = new_seq(m, i, 6 + i, 0, 0);
        run_steps(m, &ref, 1);
        cr_assert_eq(b[i]->n_out, ref->n_out);
        cr_assert_eq(memcmp(b[i]->out, ref->out, sizeof(int32_t) * (size_t)ref->n_out), 0, "sequence %d differs", i);
        cr_assert_eq(b[i]->stats.proposed, 0);
        sequence_free(ref);
    }
    for (int i = 0; i < 4; i++) sequence_free(b[i]);
    /* a sampled sequence keeps its K in a crowded step: the same draw as alone */
    sequence_t *solo = new_seq_t(m, 0, 30, 3, 4, 1.0f), *crowd[4];
    run_steps(m, &solo, 1);
    for (int i = 0; i < 4; i++) crowd[i] = new_seq_t(m, i, i == 0 ? 30 : 6, 3, 4, i == 0 ? 1.0f : 0.0f);
    run_steps(m, crowd, 4);
    cr_assert_eq(crowd[0]->n_out, solo->n_out);
    cr_assert_eq(memcmp(crowd[0]->out, solo->out, sizeof(int32_t) * (size_t)solo->n_out), 0, "sampled draw changed");
    for (int i = 0; i < 4; i++) sequence_free(crowd[i]);
    sequence_free(solo);
    sequence_free(alone);
    sequence_free(plain);
    model_free(m);
}
