/* cmd_bench_serve.c - `spex bench serve`: a load generator for a running `spex serve`.
 *
 *   spex bench serve [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--concurrency 1,8,32]
 *                    [--spec 0,2] [--requests N] [--max-tokens 64] [--temperature 0]
 *                    [--prompts FILE] [--label TEXT] [--csv FILE]
 *
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
 *
 * Prompts: one per line from --prompts, else a built-in set of Austen-like
 * openings, used round-robin. ignore_eos is not an OpenAI field, so a request
 * may end before max_tokens; tokens/s counts what was generated. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/bench_http.h"
#include "cli/bench_prompts.h"
#include "cli/bench_serve.h"
#include "cli/cli_opts.h"
#include "cli/cli_util.h"
#include "coordinator/decode/generate.h"
#include "core/log.h"
#include "core/strbuf.h"

#define BS_MAX_LIST 16
#define BS_MAX_PROMPTS 256

typedef struct bs_opts {
    http_target_t t;
    const char *host, *api_key;   /* options, into t */
    long port;
    cli_list_t conc, spec;
    long requests, max_tokens;
    double temperature;
    const char *prompts_file, *csv, *label;
    char *prompts[BS_MAX_PROMPTS];
    int n_prompts;
} bs_opts_t;

/* Latency samples, growable. */
typedef struct samples {
    double *v;
    size_t n, cap;
} samples_t;

static int samples_add(samples_t *s, double x, int times) {
    for (int i = 0; i < times; i++) {
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 1024;
            double *v = realloc(s->v, cap * sizeof *v);
            if (!v) return -1;
            s->v = v;
            s->cap = cap;
        }
        s->v[s->n++] = x;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[n]; 0 when empty. */
static double percentile(const samples_t *s, double p) {
    if (s->n == 0) return 0;
    size_t k = (size_t)(p / 100.0 * (double)s->n + 0.999999);
    return s->v[k == 0 ? 0 : k > s->n ? s->n - 1 : k - 1];
}

/* ---------------------------------------------------------------- one row */

typedef struct bs_row {
    long spec, conc, requests, errors;
    long tokens;
    double seconds;
    samples_t ttft, itl;
} bs_row_t;

typedef struct bs_run {
    const bs_opts_t *o;
    bs_row_t *row;
    atomic_long next;
    pthread_mutex_t mu;   /* guards row */
} bs_run_t;

/* One request's view of its stream. */
typedef struct bs_req {
    double t0, t_prev;
    int tokens;
    bool first_seen, failed;   /* failed: the stream carried an error event */
    samples_t itl;
    double ttft;
} bs_req_t;

static int on_chunk(void *user, const char *data, size_t len) {
    bs_req_t *q = user;
    if (len == 6 && !memcmp(data, "[DONE]", 6)) return 1;
    double now = spex_now();
    cJSON *c = cJSON_ParseWithLength(data, len);
    if (cJSON_GetObjectItemCaseSensitive(c, "error")) q->failed = true;
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(c, "usage");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
    int total = cJSON_IsNumber(ct) ? ct->valueint : q->tokens, n = total - q->tokens;
    if (n > 0) {
        if (!q->first_seen) {   /* the first token; any others in this chunk arrived with it */
            q->first_seen = true;
            q->ttft = now - q->t0;
            n--;
        }
        if (n > 0) samples_add(&q->itl, (now - q->t_prev) / n, n);
        q->tokens = total;
        q->t_prev = now;
    }
    cJSON_Delete(c);
    return 0;
}

static void request_body(const bs_opts_t *o, long spec, long i, strbuf_t *b) {
    sb_str(b, "{\"prompt\":");
    sb_json_cstr(b, o->prompts[i % o->n_prompts]);
    sb_printf(b, ",\"max_tokens\":%ld,\"temperature\":%g,\"seed\":%ld,\"spec_k\":%ld,\"stream\":true,"
                 "\"stream_options\":{\"continuous_usage_stats\":true}}",
              o->max_tokens, o->temperature, i, spec);
}

static void *client_thread(void *arg) {
    bs_run_t *run = arg;
    const bs_opts_t *o = run->o;
    long i;
    while ((i = atomic_fetch_add(&run->next, 1)) < run->row->requests) {
        strbuf_t body = {0};
        request_body(o, run->row->spec, i, &body);
        bs_req_t q = {.t0 = spex_now()};
        q.t_prev = q.t0;
        spex_err_t err = {0};
        int rc = body.oom ? -1 : http_post_sse(&o->t, "/v1/completions", body.p, body.n, on_chunk, &q, NULL, &err);
        sb_free(&body);
        pthread_mutex_lock(&run->mu);
        if (rc || !q.first_seen || q.failed) {
            if (run->row->errors++ == 0)
                spex_log("bench serve: request failed: %s", rc ? err.msg : q.failed ? "error event" : "no tokens");
        } else {
            run->row->tokens += q.tokens;
            samples_add(&run->row->ttft, q.ttft, 1);
            for (size_t k = 0; k < q.itl.n; k++) samples_add(&run->row->itl, q.itl.v[k], 1);
        }
        pthread_mutex_unlock(&run->mu);
        free(q.itl.v);
    }
    return NULL;
}

static int run_row(const bs_opts_t *o, bs_row_t *row) {
    spex_err_t err = {0};
    if (http_global_init(&err)) { cli_error("bench serve", "%s", err.msg); return -1; }
    bs_run_t run = {.o = o, .row = row};
    atomic_init(&run.next, 0);
    pthread_mutex_init(&run.mu, NULL);
    pthread_t th[1024];
    int n = (int)row->conc, started = 0;
    double t0 = spex_now();
    while (started < n && pthread_create(&th[started], NULL, client_thread, &run) == 0) started++;
    for (int k = 0; k < started; k++) pthread_join(th[k], NULL);
    row->seconds = spex_now() - t0;
    http_global_cleanup();
    pthread_mutex_destroy(&run.mu);
    qsort(row->ttft.v, row->ttft.n, sizeof(double), cmp_double);
    qsort(row->itl.v, row->itl.n, sizeof(double), cmp_double);
    return started == n ? 0 : -1;
}

/* ---------------------------------------------------------------- output */

static void print_table(const bs_opts_t *o, const bs_row_t *rows, int n) {
    printf("serve bench: %s:%d, %ld max tokens, temperature %g%s%s\n", o->t.host, o->t.port, o->max_tokens,
           o->temperature, o->label ? ", " : "", o->label ? o->label : "");
    printf("| spec_k | clients | requests | errors | req/s | tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | "
           "ITL p99 ms |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        const bs_row_t *r = &rows[i];
        double ok = (double)(r->requests - r->errors);
        printf("| %ld | %ld | %ld | %ld | %.2f | %.1f | %.1f | %.1f | %.2f | %.2f |\n", r->spec, r->conc, r->requests,
               r->errors, ok / r->seconds, (double)r->tokens / r->seconds, 1e3 * percentile(&r->ttft, 50),
               1e3 * percentile(&r->ttft, 99), 1e3 * percentile(&r->itl, 50), 1e3 * percentile(&r->itl, 99));
    }
}

static int write_csv(const bs_opts_t *o, const bs_row_t *rows, int n) {
    FILE *f = fopen(o->csv, "w");
    if (!f) return -1;
    fprintf(f, "label,spec_k,clients,requests,errors,seconds,requests_per_s,tokens,tokens_per_s,ttft_p50_ms,"
               "ttft_p99_ms,itl_p50_ms,itl_p99_ms\n");
    for (int i = 0; i < n; i++) {
        const bs_row_t *r = &rows[i];
        fprintf(f, "%s,%ld,%ld,%ld,%ld,%.3f,%.3f,%ld,%.2f,%.2f,%.2f,%.3f,%.3f\n", o->label ? o->label : "", r->spec,
                r->conc, r->requests, r->errors, r->seconds, (double)(r->requests - r->errors) / r->seconds,
                r->tokens, (double)r->tokens / r->seconds, 1e3 * percentile(&r->ttft, 50),
                1e3 * percentile(&r->ttft, 99), 1e3 * percentile(&r->itl, 50), 1e3 * percentile(&r->itl, 99));
    }
    return fclose(f);
}

/* ---------------------------------------------------------------- options */

static const cli_option_t BS_OPTIONS[] = {
    CLI_OPT_STRING("--host", "ADDR", bs_opts_t, host, "the server"),
    CLI_OPT_INT("--port", NULL, "N", bs_opts_t, port, 1, 65535, "its port"),
    CLI_OPT_STRING("--api-key", "KEY", bs_opts_t, api_key, "sent as 'Authorization: Bearer KEY' (default:\n$SPEX_API_KEY)"),
    CLI_OPT_LIST("--concurrency", "N,N,...", bs_opts_t, conc, 1, 1024, "client threads, one row each"),
    CLI_OPT_LIST("--spec", "K,K,...", bs_opts_t, spec, 0, 8, "spec_k of the requests, one row each"),
    CLI_OPT_INT("--requests", NULL, "N", bs_opts_t, requests, 1, 1L << 20, "per row (default 4 x clients, at least 8)"),
    CLI_OPT_INT("--max-tokens", NULL, "N", bs_opts_t, max_tokens, 1, 1L << 20, "max_tokens of the requests"),
    CLI_OPT_STRING("--prompts", "FILE", bs_opts_t, prompts_file,
                   "one prompt per line (default: built-in Austen-like\nopenings)"),
    CLI_OPT_STRING("--label", "TEXT", bs_opts_t, label, "first column of the CSV, and in the title"),
    CLI_OPT_STRING("--csv", "FILE", bs_opts_t, csv, "one CSV line per row too"),
};

/* -1 to go on, else the exit status. */
static int bs_parse(int argc, char **argv, bs_opts_t *o) {
    o->host = "127.0.0.1";
    o->port = 8080;
    o->conc = (cli_list_t){{1, 8, 32}, 3};
    o->spec = (cli_list_t){{0, 2}, 2};
    o->max_tokens = 64;
    cli_group_t groups[] = {CLI_GROUP(NULL, BS_OPTIONS, o), cli_request_temperature_group(&o->temperature)};
    cli_spec_t spec = CLI_SPEC("bench serve", "bench serve [options]",
                               "Load-tests a running `spex serve` (start it with --spec-k >= the largest --spec value).\n"
                               "See docs/serving.md.", groups);
    int rc = cli_run_parse(&spec, argc, argv, 2);
    if (rc >= 0) return rc;
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

int bench_serve(int argc, char **argv) {
    bs_opts_t o = {0};
    int prc = bs_parse(argc, argv, &o);
    if (prc >= 0) return prc;
    if (load_prompts(&o)) return 1;
    int n = o.spec.n * o.conc.n, rc = 0;
    bs_row_t *rows = calloc((size_t)n, sizeof *rows);
    for (int s = 0; rows && s < o.spec.n && rc == 0; s++)
        for (int c = 0; c < o.conc.n && rc == 0; c++) {
            bs_row_t *r = &rows[s * o.conc.n + c];
            r->spec = o.spec.v[s];
            r->conc = o.conc.v[c];
            r->requests = o.requests ? o.requests : r->conc * 4 < 8 ? 8 : r->conc * 4;
            rc = run_row(&o, r);
            fprintf(stderr, "spex bench serve: spec_k %ld, %ld clients: %ld requests in %.1f s, %ld errors\n",
                    r->spec, r->conc, r->requests, r->seconds, r->errors);
        }
    if (!rows) rc = -1;
    if (rc == 0) print_table(&o, rows, n);
    if (rc == 0 && o.csv && write_csv(&o, rows, n)) { cli_error("bench serve", "cannot write --csv '%s'", o.csv); rc = -1; }
    for (int i = 0; rows && i < n; i++) {
        free(rows[i].ttft.v);
        free(rows[i].itl.v);
        if (rows[i].errors == rows[i].requests) rc = -1;
    }
    for (int i = 0; i < o.n_prompts; i++) free(o.prompts[i]);
    free(rows);
    return rc ? 1 : 0;
}
