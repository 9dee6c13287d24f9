/* metrics.h - serving counters, gauges and histograms, rendered in Prometheus'
 * text exposition format (version 0.0.4) for GET /metrics.
 *
 * Who writes what:
 *   - HTTP handler threads: requests by endpoint and status (metrics_request);
 *   - the engine thread (scheduler): tokens, time to first token, inter-token
 *     latency, request durations, engine steps, speculation counters, the
 *     gauges (queue depth, running sequences, KV cache use, readiness) and the
 *     distributed backend's sample;
 *   - any thread: metrics_render.
 * One mutex inside guards everything, so writers need no other lock; every
 * call is a handful of additions.
 *
 * Inter-token latency: a step that gives a request n tokens after a gap of t
 * seconds since its previous tokens is observed as n latencies of t / n (with
 * speculation several tokens arrive at once; this is the latency per token a
 * client sees on average over that step).
 *
 * Request series (HTTP requests, finished requests, token counters and the
 * per-request histograms: time to first token, inter-token latency, queue,
 * duration, prefill and decode time, prompt and generation tokens) carry a
 * model_name label, as vLLM's do, once metrics_set_model_name was called.
 * Engine series (steps, gauges, speculation, prefix cache, backend) do not.
 *
 * The distributed backend (MPI expert parallelism) reports bytes on the wire
 * (raw vs after compression) and expert time per rank through
 * metrics_backend_t; without it (single process) those series are omitted. */
#ifndef SPEX_METRICS_H
#define SPEX_METRICS_H

#include "coordinator/model/prefix_cache.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/decode/engine.h"

#define METRICS_MAX_RANKS 256

typedef struct metrics metrics_t;

/* Sampled by the scheduler after each engine step (on the engine thread). */
typedef struct metrics_gauges {
    int queue_depth;             /* admitted, waiting for a sequence slot */
    int running;                 /* sequences in the engine */
    long kv_reserved_tokens;     /* sum of running sequences' cache capacities */
    long kv_used_tokens;         /* tokens actually cached (main model) */
    long kv_capacity_tokens;     /* the admission limit */
    size_t kv_bytes_per_token;   /* main + MTP layers */
    bool ready;
    bool has_prefix;             /* the prefix cache is on: its totals below */
    prefix_cache_stats_t prefix;
} metrics_gauges_t;

/* Filled by the distributed backend's provider (see scheduler.h); present=false
 * when there is none. Counters are totals since start. */
typedef struct metrics_backend {
    bool present;
    uint64_t wire_bytes_raw, wire_bytes_compressed;
    int n_ranks;                              /* entries of expert_seconds */
    double expert_seconds[METRICS_MAX_RANKS]; /* routed-expert compute per rank */
    int failed_rank;                          /* > 0: this worker failed (sticky), see failure_cause */
    char failure_cause[16];                   /* "no_answer", "bad_answer", "link" */
} metrics_backend_t;

metrics_t *metrics_create(void);
void metrics_free(metrics_t *m);

/* One HTTP request answered. endpoint: a fixed string (the route, or "other"). */
void metrics_request(metrics_t *m, const char *endpoint, int status);

/* The model_name label of the request series (copied; quotes and
 * backslashes escaped when rendered). NULL or "": no label. */
void metrics_set_model_name(metrics_t *m, const char *name);

/* A request that left the engine. */
typedef struct metrics_done {
    const char *finish_reason;   /* "stop", "length", "cancelled", "error" */
    int prompt_tokens, completion_tokens;
    double queue_seconds, e2e_seconds;
    double prefill_seconds;      /* its prompt's forward (0 when it never ran) */
    double decode_seconds;       /* its decode steps after the first token */
} metrics_done_t;
void metrics_request_done(metrics_t *m, const metrics_done_t *d);
void metrics_ttft(metrics_t *m, double seconds);
void metrics_itl(metrics_t *m, double seconds_per_token, int n_tokens);
/* One engine step over `rows` sequences. */
void metrics_step(metrics_t *m, double seconds, int sequences);
/* Add a finished sequence's speculation counters. */
void metrics_spec(metrics_t *m, const spec_stats_t *s);
void metrics_set_gauges(metrics_t *m, const metrics_gauges_t *g);
void metrics_set_backend(metrics_t *m, const metrics_backend_t *b);

/* The whole exposition; malloc'ed, NUL-terminated, *len (if not NULL) its length. NULL if out of memory. */
char *metrics_render(metrics_t *m, size_t *len);

#endif
