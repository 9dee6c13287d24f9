/* bench_project.c - `spex bench spec --project DIR` (see bench_project.h): time
 * DIR's verify and draft forwards, combine them with the main run's acceptance. */
#include "cli/bench_project.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/matmul.h"
#include "core/threadpool.h"
#include "coordinator/model/kv_cache.h"
#include "coordinator/model/model_bytes.h"

#define MAX_ROWS (SPEX_MAX_SPEC_K + 1)

/* The loaded DIR: one sequence whose caches (main and MTP module 0) hold `ctx`
 * tokens between measurements, and the buffers of a step. */
typedef struct proj_model {
    model_t *m;
    kv_cache_t *kv;
    int ctx, rows;            /* context; most rows measured (max_k + 1) */
    int32_t *tokens;          /* [ctx + 1] synthetic ids */
    float *hidden;            /* [ctx + 1, hidden]: main hidden_out, the MTP input */
    float *mtp_hidden;        /* [ctx + 1, hidden] */
    float *logits;            /* [rows, vocab] */
    uint8_t *want;            /* [ctx + 1] */
} proj_model_t;

/* Median seconds by rows (index 1..rows). */
typedef struct proj_costs {
    double tv[MAX_ROWS + 1];  /* main forward, logits for every row (verify) */
    double td[MAX_ROWS + 1];  /* MTP module 0, logits for the last row (draft / catch-up) */
} proj_costs_t;

/* One K of the projection; costs relative to the 1-row main step t1. */
typedef struct proj_row {
    int k;
    double drafts;            /* drafts per step, measured (K without steps) */
    double rows;              /* verify rows = 1 + drafts */
    double verify;            /* tv(rows) / t1 */
    double draft;             /* td(1) / t1: one chained draft */
    double catchups;          /* catch-ups per step: the steps that draft (each drafts its d1 in one) */
    double catchup_rows;      /* 1 + accepted drafts per catch-up */
    double catchup;           /* catchups * td(catchup_rows) / t1 */
    double cost;              /* verify + catchup + (drafts - catchups) * draft */
    double tok_step;          /* tokens per step measured on the main model at this K */
    double speedup;           /* tok_step / cost */
} proj_row_t;

int bench_project_check(const char *dir, spex_err_t *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    spex_config_t cfg;
    if (config_load(&cfg, path, err)) return spex_err_prefix(err, "--project '%s': ", dir);
    if (cfg.num_nextn_predict_layers < 1)
        return spex_fail(err,
                         "--project '%s': the checkpoint has no MTP module (num_nextn_predict_layers is 0); the "
                         "projection times MTP drafts (make one with `spex synth --out DIR --mtp 1`)",
                         dir);
    return 0;
}

void bench_project_csv_path(const char *csv, char *out, size_t size) {
    size_t n = strlen(csv);
    if (n >= 4 && !strcmp(csv + n - 4, ".csv")) snprintf(out, size, "%.*s.project.csv", (int)(n - 4), csv);
    else snprintf(out, size, "%s.project.csv", csv);
}

/* ---------------------------------------------------------------- the model */

static void proj_free(proj_model_t *p) {
    kv_cache_free(p->kv);
    free(p->tokens);
    free(p->hidden);
    free(p->mtp_hidden);
    free(p->logits);
    free(p->want);
    model_free(p->m);
    memset(p, 0, sizeof *p);
}

static int proj_load(proj_model_t *p, const bench_project_t *o, spex_err_t *err) {
    model_options_t mo = {.load_mtp = true, .local_experts = true, .progress = cli_progress,
                          .progress_user = "loading projected model"};
    cli_compute_apply(o->ep, &mo);
    p->m = model_load(o->dir, &mo, err);
    if (!p->m) return spex_err_prefix(err, "--project '%s': ", o->dir);
    if (p->m->n_mtp == 0)
        return spex_fail(err, "--project '%s': the checkpoint has no MTP module loaded; the projection times MTP drafts",
                         o->dir);
    return 0;
}

/* Cache and buffers for a `ctx`-token context plus `rows` measured rows. */
static int proj_alloc(proj_model_t *p, int rows, spex_err_t *err) {
    model_t *m = p->m;
    p->rows = rows;
    p->ctx = m->rope.max_pos - rows < BENCH_PROJECT_CONTEXT ? m->rope.max_pos - rows : BENCH_PROJECT_CONTEXT;
    if (p->ctx < 1)
        return spex_fail(err, "--project '%s': context of %d tokens, too short for %d verify rows", m->dir,
                         m->rope.max_pos, rows);
    size_t hid = (size_t)m->cfg.hidden_size, n = (size_t)(p->ctx > rows ? p->ctx : rows) + 1;
    p->kv = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim, p->ctx + rows, err);
    p->tokens = malloc(sizeof(int32_t) * n);
    p->hidden = malloc(sizeof(float) * n * hid);
    p->mtp_hidden = malloc(sizeof(float) * n * hid);
    p->logits = malloc(sizeof(float) * (size_t)rows * (size_t)m->cfg.vocab_size);
    p->want = malloc(n);
    if (!p->kv) return -1;
    if (!p->tokens || !p->hidden || !p->mtp_hidden || !p->logits || !p->want) return spex_fail(err, "out of memory");
    for (size_t i = 0; i < n; i++) p->tokens[i] = (int32_t)((i * 7919u + 13u) % (size_t)m->cfg.vocab_size);
    return 0;
}

/* An n-row MTP forward of module 0 over tokens[1..n] and hidden[0..n), as the
 * engine runs a catch-up: cache entries for every row, output and logits of
 * the last. */
static int proj_mtp(proj_model_t *p, int n, spex_err_t *err) {
    mla_seq_t seq = {p->kv, n};
    return model_mtp_forward_last(p->m, 0, p->tokens + 1, p->hidden, &seq, 1, p->mtp_hidden, p->logits, err);
}

/* The context: main model over ctx tokens, then its MTP module over the same positions (engine.c's prefill). */
static int proj_prefill(proj_model_t *p, spex_err_t *err) {
    memset(p->want, 0, (size_t)p->ctx);
    p->want[p->ctx - 1] = 1;
    mla_seq_t seq = {p->kv, p->ctx};
    if (model_forward(p->m, p->tokens, &seq, 1, p->hidden, p->want, p->logits, err)) return -1;
    return proj_mtp(p, p->ctx, err);   /* rows t = 0..ctx-1: (h_t, token_{t+1}) */
}

/* Seconds of an n-row verify forward (every row's logits), rolled back; -1 on error. */
static double proj_time_verify(proj_model_t *p, int n, spex_err_t *err) {
    mla_seq_t seq = {p->kv, n};
    double t0 = spex_now();
    if (model_forward(p->m, p->tokens, &seq, 1, p->hidden, NULL, p->logits, err)) return -1;
    double dt = spex_now() - t0;
    kv_cache_truncate(p->kv, 0, p->m->cfg.num_hidden_layers, p->ctx);
    return dt;
}

/* Seconds of an n-row MTP forward on the last verify's hidden rows, rolled back; -1 on error. */
static double proj_time_draft(proj_model_t *p, int n, spex_err_t *err) {
    double t0 = spex_now();
    if (proj_mtp(p, n, err)) return -1;
    double dt = spex_now() - t0;
    kv_cache_truncate(p->kv, p->m->cfg.num_hidden_layers, p->m->n_mtp, p->ctx);
    return dt;
}

/* ---------------------------------------------------------------- measuring */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}

/* One round: every row count of both kinds, in turn; samples[kind][n][round] (kind 0 verify, 1 draft). */
static int proj_round(proj_model_t *p, double *samples, int n_samples, int round, spex_err_t *err) {
    for (int n = 1; n <= p->rows; n++) {
        double v = proj_time_verify(p, n, err), d = v < 0 ? -1 : proj_time_draft(p, n, err);
        if (d < 0) return -1;
        if (round < 0) continue;   /* warm-up */
        samples[(size_t)n * n_samples + round] = v;
        samples[(size_t)(MAX_ROWS + 1 + n) * n_samples + round] = d;
    }
    return 0;
}

static int proj_measure(proj_model_t *p, long reps, proj_costs_t *c, spex_err_t *err) {
    int ns = (int)reps * BENCH_PROJECT_ROUNDS;
    double *s = malloc(sizeof(double) * 2 * (MAX_ROWS + 1) * (size_t)ns);
    if (!s) return spex_fail(err, "out of memory");
    int rc = proj_round(p, s, ns, -1, err);
    for (int r = 0; rc == 0 && r < ns; r++) rc = proj_round(p, s, ns, r, err);
    for (int n = 1; rc == 0 && n <= p->rows; n++) {
        c->tv[n] = median(s + (size_t)n * ns, ns);
        c->td[n] = median(s + (size_t)(MAX_ROWS + 1 + n) * ns, ns);
    }
    free(s);
    return rc;
}

/* ---------------------------------------------------------------- projecting */

/* t at a fractional row count x in [1, rows]: linear between whole rows. */
static double at_rows(const double *t, int rows, double x) {
    if (x <= 1) return t[1];
    int i = (int)x;
    if (i >= rows) return t[rows];
    return t[i] + (x - i) * (t[i + 1] - t[i]);
}

/* Without steps (nothing decoded at this K): K drafts and one catch-up of one row per step. */
static proj_row_t proj_row(const proj_costs_t *c, int rows, const spec_stats_t *st, int k) {
    proj_row_t r = {.k = k};
    double t1 = c->tv[1], steps = (double)st->steps, drafting = (double)st->drafted_at[0];
    r.drafts = steps > 0 ? st->proposed / steps : k;
    r.catchups = steps > 0 ? drafting / steps : k > 0;
    r.tok_step = steps > 0 ? st->emitted / steps : 0;
    r.rows = 1 + r.drafts;
    r.verify = at_rows(c->tv, rows, r.rows) / t1;
    r.draft = c->td[1] / t1;
    if (r.catchups > 0) {
        r.catchup_rows = 1 + (drafting > 0 ? st->accepted / drafting : 0);
        r.catchup = r.catchups * at_rows(c->td, rows, r.catchup_rows) / t1;
    }
    r.cost = r.verify + r.catchup + (r.drafts - r.catchups) * r.draft;
    r.speedup = r.cost > 0 ? r.tok_step / r.cost : 0;
    return r;
}

static void proj_print_rows(FILE *f, const proj_row_t *rows, int nk, const proj_costs_t *c, bool csv) {
    if (csv)
        fprintf(f, "k,verify_rows,rel_verify_cost,rel_draft_cost,catchups_per_step,catchup_rows,rel_catchup_cost,"
                   "drafts_per_step,rel_step_cost,tokens_per_step,projected_speedup,step_ms,draft_ms\n");
    else
        fprintf(f, "%3s %6s %8s %10s %9s %8s %12s %10s %10s %10s\n", "K", "rows", "verify", "draft/row", "catch-up",
                "(rows)", "drafts/step", "step cost", "tok/step", "projected");
    for (int i = 0; i < nk; i++) {
        const proj_row_t *r = &rows[i];
        if (csv)
            fprintf(f, "%d,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f\n", r->k, r->rows, r->verify,
                    r->draft, r->catchups, r->catchup_rows, r->catchup, r->drafts, r->cost, r->tok_step, r->speedup,
                    c->tv[1] * 1e3, c->td[1] * 1e3);
        else
            fprintf(f, "%3d %6.2f %8.3f %10.3f %9.3f %8.2f %12.2f %10.3f %10.3f %9.2fx\n", r->k, r->rows, r->verify,
                    r->draft, r->catchup, r->catchup_rows, r->drafts, r->cost, r->tok_step, r->speedup);
    }
}
static void proj_print_head(const proj_model_t *p, const bench_project_t *o, const proj_costs_t *c) {
    const model_t *m = p->m;
    const spex_config_t *g = &m->cfg;
    printf("\nprojected onto %s: %d layers, hidden %d, %d routed experts (top %d), vocab %d, %.2f GB of weights; "
           "routed experts in process%s\n",
           o->dir, g->num_hidden_layers, g->hidden_size, g->n_routed_experts, g->num_experts_per_tok, g->vocab_size,
           model_file_bytes(m) / 1e9, o->main_on_ranks ? " (the expert ranks host the benchmarked model only)" : "");
    printf("%d threads, SIMD %s, %s weights; ", threadpool_size(m->pool), simd_name(m->ex.simd),
           o->ep->weights == 0 ? "copied" : "mapped");
    printf("context %d tokens, median of %ld x %d: 1-row main step %.3f ms (%.4f GB of weights read per token), "
           "1-row MTP draft %.3f ms (%.4f GB)\n",
           p->ctx, o->reps, BENCH_PROJECT_ROUNDS, c->tv[1] * 1e3, model_decode_bytes(m) / 1e9, c->td[1] * 1e3,
           model_mtp_bytes(m, 0) / 1e9);
    printf("n-row forward / 1-row main step, n = 1..%d: verify", p->rows);
    for (int n = 1; n <= p->rows; n++) printf(" %.3f", c->tv[n] / c->tv[1]);
    printf("; MTP");
    for (int n = 1; n <= p->rows; n++) printf(" %.3f", c->td[n] / c->tv[1]);
    printf("\n");
}

static int proj_report(const proj_model_t *p, const bench_project_t *o, const proj_costs_t *c,
                       const spec_stats_t *st, int nk, spex_err_t *err) {
    proj_row_t rows[MAX_ROWS];
    for (int k = 0; k < nk; k++) rows[k] = proj_row(c, p->rows, &st[k], k);
    proj_print_head(p, o, c);
    proj_print_rows(stdout, rows, nk, c, false);
    printf("projected = tok/step (measured on the benchmarked model at that K: the table above) / step cost;\n"
           "step cost, over the 1-row main step: verify (main forward of `rows` = 1 + drafts/step rows) + catch-up\n"
           "(in each step that drafts, one MTP forward of 1 + accepted rows, drafting d1) + the other drafts,\n"
           "chained one row at a time (draft/row each); drafts, accepted and tok/step as measured above\n");
    if (!o->csv) return 0;
    char path[4096];
    bench_project_csv_path(o->csv, path, sizeof path);
    FILE *f = fopen(path, "w");
    if (!f) return spex_fail(err, "cannot write '%s'", path);
    proj_print_rows(f, rows, nk, c, true);
    if (fclose(f)) return spex_fail(err, "cannot write '%s'", path);
    printf("projection CSV: %s\n", path);
    return 0;
}

int bench_project_run(const bench_project_t *o, const spec_stats_t *st, int nk, spex_err_t *err) {
    proj_model_t p = {0};
    proj_costs_t c;
    memset(&c, 0, sizeof c);
    int rc = -1;
    if (proj_load(&p, o, err) || proj_alloc(&p, nk, err) || proj_prefill(&p, err) || proj_measure(&p, o->reps, &c, err))
        goto done;
    rc = proj_report(&p, o, &c, st, nk, err);
done:
    proj_free(&p);
    return rc;
}
