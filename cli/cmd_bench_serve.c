/* cmd_bench_serve.c - `spex bench serve`: a load generator for a running `spex serve`.
 *
 *   spex bench serve [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--concurrency 1,8,32]
 *                    [--spec 0,2] [--requests N] [--max-tokens 64] [--temperature 0]
 *                    [--turns 1] [--prompts FILE] [--label TEXT] [--csv FILE] [--wait 60] [--rounds 1]
 *
 * It first waits (up to --wait seconds) for GET /health to answer 200.
 * For every (speculation depth, concurrency) pair: `concurrency` client threads
 * send streaming completions (stream_options.continuous_usage_stats, so every
 * chunk says how many tokens exist so far) until `requests` have finished
 * (default: 4 x concurrency, at least 8). Each request's spec_k is the
 * depth of the row: the server lowers it to its own --spec-k, so start the
 * server with the largest depth benchmarked.
 *
 * Per row: requests/s and generated tokens/s over the row's wall time; time to
 * first token (request sent -> the first chunk whose usage counts a token) and inter-token latency
 * p50/p99. A chunk that brings n tokens after a gap t counts as n latencies of
 * t / n (speculation delivers several tokens per step), the convention of the
 * server's /metrics. Output: a table on stdout and, with --csv, one CSV line per row.
 * --rounds R runs the whole grid R times, the rows in turn, and reports each
 * row's tokens/s as the median of its rounds' with their range.
 *
 * Prompts: one per line from --prompts, else a built-in set of Austen-like
 * openings, used round-robin. ignore_eos is not an OpenAI field, so a request
 * may end before max_tokens; tokens/s counts what was generated.
 *
 * --turns T > 1: each client runs T-turn chats instead (cli/bench_turns.h),
 * --requests counting chats; each row reports TTFT of turn 1 and of turn T and
 * the prefix cache hit rate, from GET /metrics before and after the row
 * (cli/bench_metrics.h). Output: cli/bench_serve_report.h. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli/bench_http.h"
#include "cli/bench_metrics.h"
#include "cli/bench_prompts.h"
#include "cli/bench_serve.h"
#include "cli/bench_serve_report.h"
#include "cli/bench_stream.h"
#include "cli/bench_turns.h"
#include "cli/cli_opts.h"
#include "cli/cli_util.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/strbuf.h"

#define BS_MAX_LIST 16
#define BS_MAX_PROMPTS 256

typedef struct bs_opts {
    http_target_t t;
    const char *host, *api_key;   /* options, into t */
    long port;
    cli_list_t conc, spec;
    long requests, max_tokens, turns, wait_s, rounds;
    double temperature;
    const char *prompts_file, *csv, *label;
    char *prompts[BS_MAX_PROMPTS];
    int n_prompts;
} bs_opts_t;

/* ---------------------------------------------------------------- one row */

typedef struct bs_run {
    const bs_opts_t *o;
    bs_row_t *row;
    atomic_long next;
    pthread_mutex_t mu;   /* guards row */
} bs_run_t;

static void request_body(const bs_opts_t *o, long spec, long i, strbuf_t *b) {
    sb_str(b, "{\"prompt\":");
    sb_json_cstr(b, o->prompts[i % o->n_prompts]);
    sb_printf(b, ",\"max_tokens\":%ld,\"temperature\":%g,\"seed\":%ld,\"spec_k\":%ld,\"stream\":true,"
                 "\"stream_options\":{\"continuous_usage_stats\":true}}",
              o->max_tokens, o->temperature, i, spec);
}

/* The row's first failure is logged; later ones are only counted. */
static void count_error(bs_row_t *row, const char *why) {
    if (row->errors++ == 0) spex_log("bench serve: request failed: %s", why);
}

/* Request i of a single-turn row. */
static void one_request(bs_run_t *run, long i) {
    strbuf_t body = {0};
    request_body(run->o, run->row->spec, i, &body);
    bench_stream_t q = {0};
    spex_err_t err = {0};
    int rc = bench_stream_post(&run->o->t, "/v1/completions", &body, &q, &err);
    sb_free(&body);
    pthread_mutex_lock(&run->mu);
    if (rc) {
        count_error(run->row, err.msg);
    } else {
        run->row->tokens += q.tokens;
        samples_add(&run->row->ttft, q.ttft, 1);
        samples_merge(&run->row->itl, &q.itl);
    }
    pthread_mutex_unlock(&run->mu);
    samples_free(&q.itl);
}

/* Chat i of a multi-turn row. */
static void one_chat(bs_run_t *run, long i) {
    const bs_opts_t *o = run->o;
    turns_cfg_t c = {.t = &o->t, .turns = (int)o->turns, .max_tokens = o->max_tokens, .spec_k = run->row->spec,
                     .temperature = o->temperature};
    turns_result_t r = {0};
    spex_err_t err = {0};
    int rc = bench_conversation(&c, i, o->prompts[i % o->n_prompts], &r, &err);
    pthread_mutex_lock(&run->mu);
    if (rc) {
        count_error(run->row, err.msg);
    } else {
        run->row->tokens += r.tokens;
        samples_add(&run->row->ttft, r.ttft_first, 1);
        samples_add(&run->row->ttft_last, r.ttft_last, 1);
        samples_merge(&run->row->itl, &r.itl);
    }
    pthread_mutex_unlock(&run->mu);
    samples_free(&r.itl);
}

static void *client_thread(void *arg) {
    bs_run_t *run = arg;
    long i;
    while ((i = atomic_fetch_add(&run->next, 1)) < run->row->per_round) {
        if (run->o->turns > 1) one_chat(run, i);
        else one_request(run, i);
    }
    return NULL;
}

/* The server's prefix cache counters; a failure is logged once and clears *ok. */
static void read_prefix(const bs_opts_t *o, prefix_counts_t *c, bool *ok) {
    spex_err_t err = {0};
    if (prefix_counts_read(&o->t, c, &err) == 0) return;
    if (*ok) spex_log("bench serve: GET /metrics: %s (hit rate unknown)", err.msg);
    *ok = false;
}

/* One round of a row: per_round requests from conc clients, added to the row's totals. */
static int run_row(const bs_opts_t *o, bs_row_t *row) {
    prefix_counts_t before, after;
    long tokens0 = row->tokens;
    row->prefix_known = true;
    if (o->turns > 1) read_prefix(o, &before, &row->prefix_known);
    bs_run_t run = {.o = o, .row = row};
    atomic_init(&run.next, 0);
    pthread_mutex_init(&run.mu, NULL);
    pthread_t th[1024];
    int n = (int)row->conc, started = 0;
    double t0 = spex_now();
    while (started < n && pthread_create(&th[started], NULL, client_thread, &run) == 0) started++;
    for (int k = 0; k < started; k++) pthread_join(th[k], NULL);
    double dt = spex_now() - t0;
    row->seconds += dt;
    row->requests += row->per_round;
    pthread_mutex_destroy(&run.mu);
    if (o->turns > 1) read_prefix(o, &after, &row->prefix_known);
    if (o->turns > 1 && row->prefix_known) row->prefix = prefix_counts_delta(&before, &after);
    samples_sort(&row->ttft);
    samples_sort(&row->ttft_last);
    samples_sort(&row->itl);
    if (row->rounds < BS_MAX_ROUNDS) row->tps[row->rounds] = dt > 0 ? (double)(row->tokens - tokens0) / dt : 0;
    row->rounds++;
    return started == n ? 0 : -1;
}

/* ---------------------------------------------------------------- options */

static const cli_option_t BS_OPTIONS[] = {
    CLI_OPT_STRING("--host", "ADDR", bs_opts_t, host, "the server"),
    CLI_OPT_INT("--port", NULL, "N", bs_opts_t, port, 1, 65535, "its port"),
    CLI_OPT_STRING("--api-key", "KEY", bs_opts_t, api_key, "sent as 'Authorization: Bearer KEY' (default:\n$SPEX_API_KEY)"),
    CLI_OPT_LIST("--concurrency", "N,N,...", bs_opts_t, conc, 1, 1024, "client threads, one row each"),
    CLI_OPT_LIST("--spec", "K,K,...", bs_opts_t, spec, 0, 8, "spec_k of the requests, one row each"),
    CLI_OPT_INT("--requests", NULL, "N", bs_opts_t, requests, 1, 1L << 20,
                "per row (default 4 x clients, at least 8); chats\nwith --turns > 1"),
    CLI_OPT_INT("--turns", NULL, "T", bs_opts_t, turns, 1, 64,
                "T > 1: multi-turn chats (system + user, then each\nanswer and a follow-up question appended); reports\n"
                "TTFT of turn 1 and turn T and the prefix cache hit\nrate; 1: single completions"),
    CLI_OPT_INT("--max-tokens", NULL, "N", bs_opts_t, max_tokens, 1, 1L << 20, "max_tokens of the requests"),
    CLI_OPT_STRING("--prompts", "FILE", bs_opts_t, prompts_file,
                   "one prompt per line (default: built-in Austen-like\nopenings)"),
    CLI_OPT_STRING("--label", "TEXT", bs_opts_t, label, "first column of the CSV, and in the title"),
    CLI_OPT_STRING("--csv", "FILE", bs_opts_t, csv, "one CSV line per row too"),
    CLI_OPT_INT("--rounds", NULL, "R", bs_opts_t, rounds, 1, BS_MAX_ROUNDS,
                "run every row R times, the rows in turn each\nround; tokens/s is then the median of the\n"
                "rounds', with their range (single completions only)"),
    CLI_OPT_INT("--wait", NULL, "SEC", bs_opts_t, wait_s, 0, 86400,
                "first wait up to SEC for GET /health to answer 200\n(the server binds its port before it loads the\n"
                "model; 0 = do not check)"),
};

/* -1 to go on, else the exit status. */
static int bs_parse(int argc, char **argv, bs_opts_t *o) {
    o->host = "127.0.0.1";
    o->port = 8080;
    o->conc = (cli_list_t){{1, 8, 32}, 3};
    o->spec = (cli_list_t){{0, 2}, 2};
    o->max_tokens = 64;
    o->turns = 1;
    o->wait_s = 60;
    o->rounds = 1;
    cli_group_t groups[] = {CLI_GROUP(NULL, BS_OPTIONS, o), cli_request_temperature_group(&o->temperature)};
    cli_spec_t spec = CLI_SPEC("bench serve", "bench serve [options]",
                               "Load-tests a running `spex serve` (start it with --spec-k >= the largest --spec value).\n"
                               "See docs/serving.md.", groups);
    int rc = cli_run_parse(&spec, argc, argv, 2);
    if (rc >= 0) return rc;
    if (o->rounds > 1 && o->turns > 1)   /* a repeated chat would hit what the first round left in the prefix cache */
        return cli_usage_error(&spec, "--rounds needs --turns 1: a second round of the same chats would find the "
                                      "first round's prefixes cached");
    o->t = (http_target_t){.host = o->host, .port = (int)o->port, .api_key = o->api_key ? o->api_key : getenv("SPEX_API_KEY")};
    return -1;
}

static int load_prompts(bs_opts_t *o) {
    if (!o->prompts_file) {
        for (int i = 0; i < BENCH_N_DEFAULT_PROMPTS; i++)
            o->prompts[o->n_prompts++] = strdup(BENCH_DEFAULT_PROMPTS[i]);
        return 0;
    }
    FILE *f = fopen(o->prompts_file, "r");
    if (!f) { cli_error("bench serve", "cannot read --prompts '%s'", o->prompts_file); return -1; }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (o->n_prompts < BS_MAX_PROMPTS && (n = getline(&line, &cap, f)) > 0) {
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (n) o->prompts[o->n_prompts++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (o->n_prompts == 0) { cli_error("bench serve", "--prompts '%s' has no lines", o->prompts_file); return -1; }
    return 0;
}

/* Poll GET /health every 0.2 s until it answers 200 (model loaded, every
 * worker rank answered), for at most --wait seconds: `spex serve` binds its
 * port before it loads, and a row sent meanwhile would count only 503s
 * ("the model is still loading") or refused connections. */
static int wait_ready(const bs_opts_t *o) {
    if (o->wait_s == 0) return 0;
    double t0 = spex_now();
    for (bool told = false;;) {
        strbuf_t body = {0};
        spex_err_t err = {0};
        int rc = http_get(&o->t, "/health", &body, &err);
        sb_free(&body);
        if (rc == 0) return 0;
        if (spex_now() - t0 >= (double)o->wait_s) {
            cli_error("bench serve", "%s:%d is not ready after %ld s (GET /health: %s)", o->t.host, o->t.port,
                      o->wait_s, err.msg);
            return -1;
        }
        if (!told) spex_log("bench serve: waiting up to %ld s for %s:%d (GET /health: %s)", o->wait_s, o->t.host,
                            o->t.port, err.msg);
        told = true;
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

/* Every (spec_k, clients) row, in order, --rounds times over (so that a drift
 * of the machine hits every row alike); stops at the first that cannot run. */
static int run_rows(const bs_opts_t *o, bs_row_t *rows) {
    int rc = 0;
    for (long round = 1; round <= o->rounds && rc == 0; round++)
        for (int s = 0; s < o->spec.n && rc == 0; s++)
            for (int c = 0; c < o->conc.n && rc == 0; c++) {
                bs_row_t *r = &rows[s * o->conc.n + c];
                r->spec = o->spec.v[s];
                r->conc = o->conc.v[c];
                r->per_round = o->requests ? o->requests : r->conc * 4 < 8 ? 8 : r->conc * 4;
                long errors0 = r->errors;
                double seconds0 = r->seconds;
                rc = run_row(o, r);
                fprintf(stderr, "spex bench serve: round %ld of %ld: spec_k %ld, %ld clients: %ld %s in %.1f s, "
                                "%ld errors\n", round, o->rounds, r->spec, r->conc, r->per_round,
                        o->turns > 1 ? "chats" : "requests", r->seconds - seconds0, r->errors - errors0);
            }
    return rc;
}

static int report(const bs_opts_t *o, const bs_row_t *rows, int n) {
    bs_report_t rep = {.host = o->t.host, .label = o->label, .port = o->t.port, .turns = (int)o->turns,
                       .max_tokens = o->max_tokens, .temperature = o->temperature};
    bs_print_table(&rep, rows, n);
    if (o->csv && bs_write_csv(&rep, o->csv, rows, n)) {
        cli_error("bench serve", "cannot write --csv '%s'", o->csv);
        return -1;
    }
    return 0;
}

int bench_serve(int argc, char **argv) {
    bs_opts_t o = {0};
    int prc = bs_parse(argc, argv, &o);
    if (prc >= 0) return prc;
    if (load_prompts(&o)) return 1;
    spex_err_t err = {0};
    if (http_global_init(&err)) { cli_error("bench serve", "%s", err.msg); return 1; }
    if (wait_ready(&o)) {
        http_global_cleanup();
        for (int i = 0; i < o.n_prompts; i++) free(o.prompts[i]);
        return 1;
    }
    int n = o.spec.n * o.conc.n;
    bs_row_t *rows = calloc((size_t)n, sizeof *rows);
    int rc = rows ? run_rows(&o, rows) : -1;
    if (rc == 0) rc = report(&o, rows, n);
    for (int i = 0; rows && i < n; i++) {
        samples_free(&rows[i].ttft);
        samples_free(&rows[i].ttft_last);
        samples_free(&rows[i].itl);
        if (rows[i].errors == rows[i].requests) rc = -1;
    }
    http_global_cleanup();
    for (int i = 0; i < o.n_prompts; i++) free(o.prompts[i]);
    free(rows);
    return rc ? 1 : 0;
}
