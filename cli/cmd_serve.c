/* cmd_serve.c - `spex serve`: an OpenAI-compatible HTTP server with continuous batching.
 *
 *   spex serve --model DIR [--host 127.0.0.1] [--port 8080] [--port-file FILE] [limits...]
 *
 * Order of events: bind the port (and write --port-file) first, so a job
 * script can wait for /health while the model loads; load tokenizer and
 * model; start the scheduler; serve on this thread, which is the engine
 * thread (all model work, hence any MPI traffic, stays here; HTTP handlers run
 * on libmicrohttpd's threads). SIGTERM/SIGINT: stop accepting, let running
 * requests finish within --grace seconds, cancel the rest, exit 0.
 * User documentation: docs/serving.md. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_chat_template.h"
#include "cli/cli_ep.h"
#include "cli/cli_genconf.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "coordinator/ep/ep_backend.h"
#include "coordinator/serve/metrics.h"
#include "coordinator/serve/scheduler.h"
#include "core/file.h"
#include "core/log.h"
#include "server/api.h"
#include "server/http.h"
#include "server/signals.h"

typedef struct serve_cli {
    const char *dir, *host, *port_file, *api_key, *model_name;
    long port, max_queue, max_body, max_conn, max_per_client;
    double grace, header_timeout, body_timeout, keepalive_timeout;
    const char *cors_origin, *tls_cert, *tls_key;
    const char *chat_template;   /* --chat-template auto|builtin|FILE */
    bool no_gen_config;      /* --no-generation-config */
    cli_sched_t sched;       /* limits of the scheduler */
    cli_sampling_t sp;       /* --spec-k (default: spex_default_spec_k(), engine.h), --draft */
    cli_ep_t ep;             /* expert parallelism: workers under mpirun, loopback ranks, or --no-ep */
} serve_cli_t;

static const cli_option_t SERVE_OPTIONS[] = {
    CLI_OPT_STRING("--host", "ADDR", serve_cli_t, host, "address to bind (0.0.0.0 or :: for every interface)"),
    CLI_OPT_INT("--port", NULL, "N", serve_cli_t, port, 0, 65535, "TCP port (0 = any free port, see --port-file)"),
    CLI_OPT_STRING("--port-file", "FILE", serve_cli_t, port_file, "write the bound port to FILE once listening"),
    CLI_OPT_STRING("--api-key", "KEY", serve_cli_t, api_key,
                   "require 'Authorization: Bearer KEY' (default:\n$SPEX_API_KEY if set)"),
    CLI_OPT_INT("--max-queue", NULL, "N", serve_cli_t, max_queue, 0, 1 << 20,
                "requests waiting beyond the free slots before 429"),
    CLI_OPT_INT("--max-body-bytes", NULL, "N", serve_cli_t, max_body, 64, 1L << 32, "largest request body"),
    CLI_OPT_DOUBLE("--grace", "SECONDS", serve_cli_t, grace, 0, 86400,
                   "on SIGTERM, time running requests get to finish"),
    CLI_OPT_STRING("--model-name", "NAME", serve_cli_t, model_name,
                   "name in /v1/models and responses (default: the\nmodel directory's name)"),
    CLI_OPT_INT("--max-connections", NULL, "N", serve_cli_t, max_conn, 4, 65536, "concurrent HTTP connections"),
    CLI_OPT_INT("--max-connections-per-client", NULL, "N", serve_cli_t, max_per_client, 1, 65536,
                "connections from one client address (default: a\nquarter of --max-connections, at least 8)"),
    CLI_OPT_DOUBLE("--header-timeout", "SECONDS", serve_cli_t, header_timeout, 0.1, 3600,
                   "time a new connection has to send its request header"),
    CLI_OPT_DOUBLE("--body-timeout", "SECONDS", serve_cli_t, body_timeout, 0.1, 3600,
                   "time from a request's header to the end of its body"),
    CLI_OPT_DOUBLE("--keepalive-timeout", "SECONDS", serve_cli_t, keepalive_timeout, 0.1, 3600,
                   "time an idle keep-alive connection is kept open"),
    CLI_OPT_STRING("--cors-origin", "ORIGIN", serve_cli_t, cors_origin,
                   "answer browsers from ORIGIN ('*' = any): CORS\nheaders on every response, OPTIONS preflight 204"),
    CLI_OPT_STRING("--tls-cert", "FILE", serve_cli_t, tls_cert, "serve HTTPS with this PEM certificate (chain)"),
    CLI_OPT_STRING("--tls-key", "FILE", serve_cli_t, tls_key, "the PEM private key of --tls-cert"),
};

/* -1 to go on, else the exit status. */
static int serve_parse(int argc, char **argv, serve_cli_t *c) {
    *c = (serve_cli_t){.host = "127.0.0.1", .port = 8080, .max_queue = 64, .max_body = 1 << 20, .grace = 30,
                       .max_conn = 256, .header_timeout = 5, .body_timeout = 10, .keepalive_timeout = 5,
                       .sched = {.max_running = 16}};
    c->sp = cli_sampling_defaults();
    /* not given: spex_default_spec_k() (engine.h). With the step row budget (--spec-step-rows 8)
     * `spex bench serve` on the shipped model, two rounds, measured K = 1 at 1.13-1.15x of K = 0
     * for 1 client and 1.00-1.02x for 8, K = 3 1.09-1.16x and 1.00-1.05x (greedy) - docs/serving.md */
    c->sp.spec_k = -1;
    cli_ep_init(&c->ep);
    cli_group_t groups[] = {cli_model_group(&c->dir), CLI_GROUP(NULL, SERVE_OPTIONS, c), cli_sched_group(&c->sched), cli_gen_config_group(&c->no_gen_config),
                            cli_chat_template_group(&c->chat_template), cli_sampling_group(&c->sp, CLI_S_SPEC_K | CLI_S_DRAFT | CLI_S_DRAFT_MIN_P | CLI_S_SPEC_STEP_ROWS), cli_ep_group(&c->ep), cli_compute_group(&c->ep)};
    cli_spec_t spec = CLI_SPEC("serve", "serve --model DIR [options]",
                               "Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, /health,\n"
                               "/metrics, POST /tokenize, /detokenize. With an MTP module --spec-k defaults to 1 in one process\n"
                               "and 3 with expert ranks; --spec-step-rows caps the drafts of a crowded step. Documentation:\n"
                               "docs/serving.md", groups);
    int rc = cli_run_parse(&spec, argc, argv, 1);
    if (rc >= 0) return rc;
    if (!c->api_key) c->api_key = getenv("SPEX_API_KEY");
    if (c->api_key && !c->api_key[0]) c->api_key = NULL;
    if (!c->tls_cert != !c->tls_key) return cli_usage_error(&spec, "--tls-cert and --tls-key go together");
    if (!c->max_per_client) c->max_per_client = c->max_conn / 4 > 8 ? c->max_conn / 4 : 8;
    return -1;
}

/* The last path component of the model directory. */
static void default_model_name(const char *dir, char *out, size_t len) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && dir[start - 1] != '/') start--;
    snprintf(out, len, "%.*s", (int)(n - start), dir + start);
}

/* Write the port to FILE atomically (temp file + rename), so a reader never sees half a number. */
static int write_port_file(const char *path, int port) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) || rename(tmp, path)) { unlink(tmp); return -1; }
    return 0;
}

typedef struct serve_state {
    serve_cli_t c;
    char name[256];
    metrics_t *metrics;
    http_server_t *http;
    tokenizer_t *tok;
    model_t *m;
    scheduler_t *sched;
    chat_template_t *chat;   /* the model's chat format */
    api_ctx_t api;
    api_defaults_t defaults; /* OpenAI's, with generation_config.json's on top */
} serve_state_t;

static void quiesce_http(void *user) { http_server_quiesce(user); }

/* Readiness probe (engine thread, about once a second): every worker rank
 * answers a statistics request within --rank-timeout. The round trip also
 * keeps the workers' --idle-timeout from expiring while nobody sends requests. */
static bool workers_health(void *user, char *why, size_t why_len) {
    cli_ep_t *ep = user;
    spex_err_t err = {{0}};
    if (!ep->backend || ep_backend_fetch_worker_stats(ep->backend, &err) == 0) return true;
    const char *failure = ep_backend_failure(ep->backend, NULL, NULL);   /* sticky: the first, naming the rank */
    snprintf(why, why_len, "%s", failure ? failure : err.msg);
    return false;
}

/* /metrics: bytes on the wire (raw vs encoded, both directions) and routed-expert compute per rank. */
static void workers_metrics(void *user, metrics_backend_t *out) {
    cli_ep_t *ep = user;
    const ep_stats_t *st = ep->backend ? ep_backend_stats(ep->backend) : NULL;
    if (!st) return;
    ep_layer_stats_t t = ep_stats_total(st);
    out->present = true;
    out->wire_bytes_raw = (uint64_t)(t.dispatch.raw_bytes + t.combine.raw_bytes);
    out->wire_bytes_compressed = (uint64_t)(t.dispatch.wire_bytes + t.combine.wire_bytes);
    out->n_ranks = st->world < METRICS_MAX_RANKS ? st->world : METRICS_MAX_RANKS;
    for (int r = 1; r < out->n_ranks; r++) out->expert_seconds[r] = st->rank[r].t_compute;
    const char *cause = NULL;
    if (ep_backend_failure(ep->backend, &out->failed_rank, &cause))
        snprintf(out->failure_cause, sizeof out->failure_cause, "%s", cause ? cause : "unknown");
}

static int serve_load(serve_state_t *st, spex_err_t *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", st->c.dir);
    if (access(path, R_OK) == 0 && !(st->tok = tokenizer_load(st->c.dir, err))) return -1;
    if (!st->tok) spex_log("serve: no tokenizer.json in '%s': prompts must be token id arrays, no text output", st->c.dir);
    if (!(st->chat = cli_chat_template_load("serve", st->c.dir, st->c.chat_template, err))) return -1;
    model_options_t opt = {.load_mtp = st->c.sp.spec_k != 0, .local_experts = true, .progress = cli_progress,
                           .progress_user = "loading model"};
    if (!(st->m = cli_model_load(st->c.dir, &opt, &st->c.ep, err))) return -1;   /* the workers' handshake */
    size_t prefix = cli_sched_prefix_bytes(&st->c.sched);
    if (prefix && model_set_prefix_cache(st->m, prefix, err)) return -1;
    gen_config_t gc;
    if (cli_gen_config_load("serve", st->c.dir, st->c.no_gen_config, st->m->cfg.vocab_size, &gc, err)) return -1;
    st->defaults = (api_defaults_t){.temperature = 1.0f};
    cli_gen_config_api(&gc, &st->defaults);
    int spec_k = st->c.sp.spec_k >= 0 ? (int)st->c.sp.spec_k : spex_default_spec_k(st->m->n_mtp, opt.local_experts);
    const cli_sched_t *l = &st->c.sched;
    sched_config_t sc = {.max_running = (int)l->max_running, .max_queue = (int)st->c.max_queue,
                         .kv_capacity_tokens = l->kv_capacity, .max_prompt_tokens = (int)l->max_prompt,
                         .max_tokens_limit = (int)l->max_tokens_limit, .spec_k = spec_k,
                         .argmax_drafts = st->c.sp.draft == CLI_DRAFT_ARGMAX,
                         .spec_step_rows = (int)st->c.sp.spec_step_rows, .draft_min_p = (float)st->c.sp.draft_min_p, .metrics = st->metrics, .on_shutdown = quiesce_http,
                         .shutdown_user = st->http, .health = workers_health, .health_user = &st->c.ep,
                         .backend_metrics = workers_metrics, .backend_user = &st->c.ep, .extra_eos = gc.eos};
    if (!(st->sched = scheduler_create(st->m, st->tok, &sc, err))) return -1;
    st->api = (api_ctx_t){.sched = st->sched, .tok = st->tok, .model_name = st->name,
                          .vocab_size = st->m->cfg.vocab_size, .defaults = &st->defaults,
                          .context = scheduler_context(st->sched),
                          .chat_template = chat_template_is_builtin(st->chat) ? NULL : st->chat};
    const sched_config_t *eff = scheduler_config(st->sched);
    spex_log("serve: model '%s' ready: context %d, spec-k %d, max-running %d, max-queue %d, kv capacity %ld tokens",
             st->name, scheduler_context(st->sched), spec_k, eff->max_running, eff->max_queue,
             eff->kv_capacity_tokens);
    return 0;
}

/* --tls-cert / --tls-key read into hc (malloc'ed; freed by the caller). */
static int read_tls(const serve_cli_t *c, http_config_t *hc, spex_err_t *err) {
    if (!c->tls_cert) return 0;
    char *cert = spex_read_file(c->tls_cert, 1u << 20, NULL, err);
    if (!cert) return spex_err_prefix(err, "--tls-cert '%s': ", c->tls_cert);
    char *key = spex_read_file(c->tls_key, 1u << 20, NULL, err);
    if (!key) { free(cert); return spex_err_prefix(err, "--tls-key '%s': ", c->tls_key); }
    hc->tls_cert_pem = cert;
    hc->tls_key_pem = key;
    return 0;
}

/* Keep freed memory for the next request instead of handing it back to the
 * system. A sequence's KV cache (per layer: capacity x (kv_lora + rope)
 * floats) is often beyond glibc's adaptive mmap threshold, which a growing
 * chat keeps outgrowing: every request then mapped fresh pages, faulted each
 * one in and unmapped them at its end (deep-snap, 15 layers: 2,400 extra page
 * faults over a 20-request chat benchmark, ~2 ms of a 15 ms cached turn). Up
 * to 64 MiB of free heap stays mapped; body_gate's malloc_trim still returns
 * what a burst of large request bodies left behind. */
static void keep_freed_memory(void) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

static void serve_free(serve_state_t *st) {
    http_server_stop(st->http);   /* joins the connection threads: nobody uses the scheduler after this */
    scheduler_free(st->sched);
    model_free(st->m);
    tokenizer_free(st->tok);
    chat_template_free(st->chat);
    metrics_free(st->metrics);
}

int cmd_serve(int argc, char **argv) {
    serve_state_t st = {0};
    int prc = serve_parse(argc, argv, &st.c);
    if (prc >= 0) return prc;
    default_model_name(st.c.dir, st.name, sizeof st.name);
    if (st.c.model_name) snprintf(st.name, sizeof st.name, "%s", st.c.model_name);
    volatile sig_atomic_t stop = 0;
    stop_signals_install(&stop);
    spex_err_t err = {0};
    int rc = 1;
    http_config_t hc = {.host = st.c.host, .port = (int)st.c.port, .api_key = st.c.api_key,
                        .max_body_bytes = (size_t)st.c.max_body, .model_name = st.name,
                        .max_connections = (unsigned)st.c.max_conn, .max_per_client = (unsigned)st.c.max_per_client,
                        .header_timeout = st.c.header_timeout, .body_timeout = st.c.body_timeout,
                        .idle_timeout = st.c.keepalive_timeout, .cors_origin = st.c.cors_origin};
    if (!(hc.metrics = st.metrics = metrics_create())) { cli_error("serve", "out of memory"); return 1; }
    metrics_set_model_name(st.metrics, st.name);
    if (read_tls(&st.c, &hc, &err)) goto fail;
    st.http = http_server_start(&hc, &err);
    free((char *)hc.tls_cert_pem);   /* the server keeps its own copies */
    free((char *)hc.tls_key_pem);
    if (!st.http) goto fail;
    spex_log("serve: listening on %s://%s:%d%s", st.c.tls_cert ? "https" : "http", st.c.host, http_server_port(st.http),
             st.c.api_key ? " (API key required)" : "");
    if (st.c.port_file && write_port_file(st.c.port_file, http_server_port(st.http))) {
        spex_fail(&err, "cannot write --port-file '%s'", st.c.port_file);
        goto fail;
    }
    if (serve_load(&st, &err)) goto fail;
    keep_freed_memory();
    http_server_attach(st.http, &st.api);
    scheduler_run(st.sched, &stop, st.c.grace);
    http_server_drain(st.http, 5.0);   /* last events and [DONE] reach the clients */
    spex_log("serve: stopped");
    rc = cli_ep_finish("serve", &st.c.ep) ? 1 : 0;   /* --ep-stats */
    const char *failure = st.c.ep.backend ? ep_backend_failure(st.c.ep.backend, NULL, NULL) : NULL;
    if (failure) {   /* the job failed even if SIGTERM ended it: say so in the exit status */
        spex_log("serve: exiting with status 1: expert parallelism failed: %s", failure);
        rc = 1;
    }
    goto done;
fail:
    cli_error("serve", "%s", err.msg);
done:
    serve_free(&st);
    return rc;
}
