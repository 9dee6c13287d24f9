/* metrics.c - see metrics.h. Histograms have fixed bucket bounds chosen for
 * CPU inference (milliseconds to a minute); rendering is cumulative as
 * Prometheus expects. */
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

#define HIST_MAX_BUCKETS 20
#define MAX_STATUS_SERIES 64

static const double TTFT_BOUNDS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double ITL_BOUNDS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
static const double E2E_BOUNDS[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
static const double STEP_BOUNDS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
static const double PHASE_BOUNDS[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
static const double TOKEN_BOUNDS[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000,
                                      100000, 200000};

typedef struct hist {
    const double *bounds;
    int nb;
    uint64_t counts[HIST_MAX_BUCKETS + 1];   /* per bucket (not cumulative); last = +Inf */
    double sum;
    uint64_t count;
} hist_t;

typedef struct status_series {
    const char *endpoint;
    int status;
    uint64_t count;
} status_series_t;

struct metrics {
    pthread_mutex_t mu;
    status_series_t status[MAX_STATUS_SERIES];
    int n_status;
    uint64_t prompt_tokens, completion_tokens;
    uint64_t finished_stop, finished_length, finished_cancelled, finished_error;
    hist_t ttft, itl, e2e, queue, step, prefill, decode, prompt_len, gen_len;
    char model_label[320];   /* model_name="..." (escaped), or "" */
    uint64_t step_sequences;
    spec_stats_t spec;
    metrics_gauges_t g;
    metrics_backend_t backend;
};

static void hist_init(hist_t *h, const double *bounds, int nb) {
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->nb = nb;
}

static void hist_observe(hist_t *h, double v, uint64_t n) {
    int b = 0;
    while (b < h->nb && v > h->bounds[b]) b++;
    h->counts[b] += n;
    h->sum += v * (double)n;
    h->count += n;
}

metrics_t *metrics_create(void) {
    metrics_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
#define N(a) (int)(sizeof a / sizeof a[0])
    hist_init(&m->ttft, TTFT_BOUNDS, N(TTFT_BOUNDS));
    hist_init(&m->itl, ITL_BOUNDS, N(ITL_BOUNDS));
    hist_init(&m->e2e, E2E_BOUNDS, N(E2E_BOUNDS));
    hist_init(&m->queue, E2E_BOUNDS, N(E2E_BOUNDS));
    hist_init(&m->step, STEP_BOUNDS, N(STEP_BOUNDS));
    hist_init(&m->prefill, PHASE_BOUNDS, N(PHASE_BOUNDS));
    hist_init(&m->decode, PHASE_BOUNDS, N(PHASE_BOUNDS));
    hist_init(&m->prompt_len, TOKEN_BOUNDS, N(TOKEN_BOUNDS));
    hist_init(&m->gen_len, TOKEN_BOUNDS, N(TOKEN_BOUNDS));
#undef N
    return m;
}

void metrics_free(metrics_t *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void metrics_request(metrics_t *m, const char *endpoint, int status) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_status && !(m->status[i].status == status && !strcmp(m->status[i].endpoint, endpoint))) i++;
    if (i == m->n_status && m->n_status < MAX_STATUS_SERIES)
        m->status[m->n_status++] = (status_series_t){endpoint, status, 0};
    if (i < m->n_status) m->status[i].count++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_set_model_name(metrics_t *m, const char *name) {
    if (!m) return;
    strbuf_t b = {0};
    if (name && name[0]) {
        sb_str(&b, "model_name=\"");
        for (const char *c = name; *c && b.n < sizeof m->model_label - 8; c++) {
            if (*c == '"' || *c == '\\') sb_add(&b, "\\", 1);
            if (*c == '\n') sb_str(&b, "\\n");
            else sb_add(&b, c, 1);
        }
        sb_str(&b, "\"");
    }
    pthread_mutex_lock(&m->mu);
    snprintf(m->model_label, sizeof m->model_label, "%s", b.p && !b.oom ? b.p : "");
    pthread_mutex_unlock(&m->mu);
    sb_free(&b);
}

void metrics_request_done(metrics_t *m, const metrics_done_t *d) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += (uint64_t)d->prompt_tokens;
    m->completion_tokens += (uint64_t)d->completion_tokens;
    if (!strcmp(d->finish_reason, "stop")) m->finished_stop++;
    else if (!strcmp(d->finish_reason, "length")) m->finished_length++;
    else if (!strcmp(d->finish_reason, "cancelled")) m->finished_cancelled++;
    else m->finished_error++;
    hist_observe(&m->queue, d->queue_seconds, 1);
    hist_observe(&m->e2e, d->e2e_seconds, 1);
    if (d->prefill_seconds > 0) {   /* it ran: its phases and lengths */
        hist_observe(&m->prefill, d->prefill_seconds, 1);
        hist_observe(&m->decode, d->decode_seconds, 1);
        hist_observe(&m->prompt_len, d->prompt_tokens, 1);
        hist_observe(&m->gen_len, d->completion_tokens, 1);
    }
    pthread_mutex_unlock(&m->mu);
}

void metrics_ttft(metrics_t *m, double seconds) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    hist_observe(&m->ttft, seconds, 1);
    pthread_mutex_unlock(&m->mu);
}

void metrics_itl(metrics_t *m, double seconds_per_token, int n_tokens) {
    if (!m || n_tokens <= 0) return;
    pthread_mutex_lock(&m->mu);
    hist_observe(&m->itl, seconds_per_token, (uint64_t)n_tokens);
    pthread_mutex_unlock(&m->mu);
}

void metrics_step(metrics_t *m, double seconds, int sequences) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    hist_observe(&m->step, seconds, 1);
    m->step_sequences += (uint64_t)sequences;
    pthread_mutex_unlock(&m->mu);
}

void metrics_spec(metrics_t *m, const spec_stats_t *s) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    spec_stats_add(&m->spec, s);
    pthread_mutex_unlock(&m->mu);
}

void metrics_set_gauges(metrics_t *m, const metrics_gauges_t *g) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->g = *g;
    pthread_mutex_unlock(&m->mu);
}

void metrics_set_backend(metrics_t *m, const metrics_backend_t *b) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->backend = *b;
    if (m->backend.n_ranks > METRICS_MAX_RANKS) m->backend.n_ranks = METRICS_MAX_RANKS;
    pthread_mutex_unlock(&m->mu);
}

/* ---------------------------------------------------------------- rendering */

static void head(strbuf_t *o, const char *name, const char *type, const char *help) {
    sb_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(strbuf_t *o, const char *name, const char *help, uint64_t v) {
    head(o, name, "counter", help);
    sb_printf(o, "%s %llu\n", name, (unsigned long long)v);
}

/* A counter with the label set {labels} ("" = none). */
static void counter_l(strbuf_t *o, const char *name, const char *help, const char *labels, uint64_t v) {
    head(o, name, "counter", help);
    sb_printf(o, "%s%s%s%s %llu\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "", (unsigned long long)v);
}

static void gauge(strbuf_t *o, const char *name, const char *help, double v) {
    head(o, name, "gauge", help);
    sb_printf(o, "%s %.17g\n", name, v);
}

/* A histogram; labels ("" = none) go on every series. */
static void hist_l(strbuf_t *o, const char *name, const char *help, const char *labels, const hist_t *h) {
    head(o, name, "histogram", help);
    const char *sep = labels[0] ? "," : "";
    uint64_t cum = 0;
    for (int b = 0; b < h->nb; b++) {
        cum += h->counts[b];
        sb_printf(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, h->bounds[b], (unsigned long long)cum);
    }
    sb_printf(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)h->count);
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    sb_printf(o, "%s_sum%s%s%s %.9g\n%s_count%s%s%s %llu\n", name, open, labels, close, h->sum, name, open, labels,
              close, (unsigned long long)h->count);
}

static void hist(strbuf_t *o, const char *name, const char *help, const hist_t *h) { hist_l(o, name, help, "", h); }

static void render_requests(strbuf_t *o, const metrics_t *m) {
    const char *ml = m->model_label, *sep = ml[0] ? "," : "";
    head(o, "spex_http_requests_total", "counter",
         "HTTP requests answered, by endpoint and status code (499: the client went away first)");
    for (int i = 0; i < m->n_status; i++)
        sb_printf(o, "spex_http_requests_total{%s%sendpoint=\"%s\",status=\"%d\"} %llu\n", ml, sep,
                  m->status[i].endpoint, m->status[i].status, (unsigned long long)m->status[i].count);
    head(o, "spex_requests_finished_total", "counter", "Requests that left the engine, by finish reason");
    const char *reasons[4] = {"stop", "length", "cancelled", "error"};
    uint64_t counts[4] = {m->finished_stop, m->finished_length, m->finished_cancelled, m->finished_error};
    for (int i = 0; i < 4; i++)
        sb_printf(o, "spex_requests_finished_total{%s%sfinish_reason=\"%s\"} %llu\n", ml, sep, reasons[i],
                  (unsigned long long)counts[i]);
    counter_l(o, "spex_prompt_tokens_total", "Prompt tokens of finished requests", ml, m->prompt_tokens);
    counter_l(o, "spex_generation_tokens_total", "Tokens generated for finished requests", ml, m->completion_tokens);
}

static void render_gauges(strbuf_t *o, const metrics_gauges_t *g) {
    gauge(o, "spex_ready", "1 when the model is loaded and every worker answered", g->ready ? 1 : 0);
    gauge(o, "spex_queue_depth", "Requests waiting for a sequence slot", g->queue_depth);
    gauge(o, "spex_running_sequences", "Sequences in the engine", g->running);
    gauge(o, "spex_kv_cache_reserved_tokens", "Sum of the running sequences' KV cache capacities",
          (double)g->kv_reserved_tokens);
    gauge(o, "spex_kv_cache_used_tokens", "Tokens held in the running sequences' KV caches",
          (double)g->kv_used_tokens);
    gauge(o, "spex_kv_cache_capacity_tokens", "KV cache admission limit (--kv-capacity-tokens)",
          (double)g->kv_capacity_tokens);
    gauge(o, "spex_kv_cache_reserved_bytes", "Bytes of KV cache reserved by running sequences",
          (double)g->kv_reserved_tokens * (double)g->kv_bytes_per_token);
    gauge(o, "spex_kv_cache_usage_ratio", "Reserved / capacity",
          g->kv_capacity_tokens > 0 ? (double)g->kv_reserved_tokens / (double)g->kv_capacity_tokens : 0);
    if (!g->has_prefix) return;
    const prefix_cache_stats_t *p = &g->prefix;
    counter(o, "spex_prefix_cache_lookups_total", "Prompts looked up in the prefix cache", p->lookups);
    counter(o, "spex_prefix_cache_hits_total", "Prompts that found a cached prefix", p->hits);
    counter(o, "spex_prefix_cache_hit_tokens_total", "Prompt tokens restored instead of computed", p->hit_tokens);
    counter(o, "spex_prefix_cache_evicted_blocks_total", "16-token blocks evicted (least recently used)",
            p->evicted_blocks);
    gauge(o, "spex_prefix_cache_bytes", "Bytes of KV rows held by the prefix cache", (double)p->bytes);
    gauge(o, "spex_prefix_cache_max_bytes", "Prefix cache budget (--prefix-cache-mb)", (double)p->max_bytes);
}

static void render_spec(strbuf_t *o, const spec_stats_t *s) {
    counter(o, "spex_spec_steps_total", "Verify forwards (one per decoding sequence and step)", (uint64_t)s->steps);
    counter(o, "spex_spec_emitted_tokens_total", "Tokens emitted by verify steps", (uint64_t)s->emitted);
    head(o, "spex_spec_drafted_total", "counter", "MTP drafts evaluated, by draft position (1 = first draft)");
    for (int j = 0; j < SPEX_MAX_SPEC_K && s->drafted_at[j]; j++)
        sb_printf(o, "spex_spec_drafted_total{position=\"%d\"} %ld\n", j + 1, s->drafted_at[j]);
    head(o, "spex_spec_accepted_total", "counter", "MTP drafts accepted, by draft position");
    for (int j = 0; j < SPEX_MAX_SPEC_K && s->drafted_at[j]; j++)
        sb_printf(o, "spex_spec_accepted_total{position=\"%d\"} %ld\n", j + 1, s->accepted_at[j]);
    head(o, "spex_spec_acceptance_ratio", "gauge", "Accepted / drafted, by draft position");
    for (int j = 0; j < SPEX_MAX_SPEC_K && s->drafted_at[j]; j++)
        sb_printf(o, "spex_spec_acceptance_ratio{position=\"%d\"} %.6f\n", j + 1,
             (double)s->accepted_at[j] / (double)s->drafted_at[j]);
}

static void render_backend(strbuf_t *o, const metrics_backend_t *b) {
    if (!b->present) return;
    head(o, "spex_wire_bytes_total", "counter", "Expert-parallel payload bytes, before and after compression");
    sb_printf(o, "spex_wire_bytes_total{kind=\"raw\"} %llu\n", (unsigned long long)b->wire_bytes_raw);
    sb_printf(o, "spex_wire_bytes_total{kind=\"compressed\"} %llu\n", (unsigned long long)b->wire_bytes_compressed);
    head(o, "spex_expert_seconds_total", "counter", "Routed-expert compute time, by rank");
    for (int r = 0; r < b->n_ranks; r++) sb_printf(o, "spex_expert_seconds_total{rank=\"%d\"} %.9g\n", r, b->expert_seconds[r]);
    head(o, "spex_worker_failed", "gauge", "1 for the worker rank whose failure broke expert parallelism (sticky)");
    if (b->failed_rank > 0 || b->failure_cause[0])
        sb_printf(o, "spex_worker_failed{rank=\"%d\",cause=\"%s\"} 1\n", b->failed_rank, b->failure_cause);
}

char *metrics_render(metrics_t *m, size_t *len) {
    strbuf_t o = {0};
    pthread_mutex_lock(&m->mu);
    render_requests(&o, m);
    const char *ml = m->model_label;
    hist_l(&o, "spex_time_to_first_token_seconds", "From arrival to the first generated token", ml, &m->ttft);
    hist_l(&o, "spex_inter_token_latency_seconds", "Time per generated token after the first", ml, &m->itl);
    hist_l(&o, "spex_request_queue_seconds", "From arrival to admission into the engine", ml, &m->queue);
    hist_l(&o, "spex_request_duration_seconds", "From arrival to the last token", ml, &m->e2e);
    hist_l(&o, "spex_request_prefill_seconds", "A request's prompt forward (prefill), for requests that ran", ml,
           &m->prefill);
    hist_l(&o, "spex_request_decode_seconds", "A request's decode steps after its first token, for requests that ran",
           ml, &m->decode);
    hist_l(&o, "spex_request_prompt_tokens", "Prompt tokens per request that ran", ml, &m->prompt_len);
    hist_l(&o, "spex_request_generation_tokens", "Generated tokens per request that ran", ml, &m->gen_len);
    hist(&o, "spex_engine_step_seconds", "One engine step over every running sequence", &m->step);
    counter(&o, "spex_engine_step_sequences_total", "Sum over steps of the sequences in the step",
            m->step_sequences);
    render_gauges(&o, &m->g);
    render_spec(&o, &m->spec);
    render_backend(&o, &m->backend);
    pthread_mutex_unlock(&m->mu);
    return sb_take(&o, len);
}
