/* bench_metrics.h - the prefix cache's effect on a row of `spex bench serve`,
 * from the server's GET /metrics read before and after the row: hit rate =
 * delta spex_prefix_cache_hit_tokens_total / delta spex_prompt_tokens_total
 * (prompt tokens restored instead of computed), and hits / lookups (prompts
 * that found a cached prefix). A server run with --no-prefix-cache has no
 * spex_prefix_cache_* series: the row then reports "off". */
#ifndef SPEX_CLI_BENCH_METRICS_H
#define SPEX_CLI_BENCH_METRICS_H

#include <stdbool.h>

#include "cli/bench_http.h"

typedef struct prefix_counts {
    bool on;   /* the server reports the prefix cache series */
    double prompt_tokens, hit_tokens, hits, lookups;
} prefix_counts_t;

/* GET /metrics and read the counters: 0, or -1 with err. */
int prefix_counts_read(const http_target_t *t, prefix_counts_t *out, spex_err_t *err);

/* after - before (on only when both are). */
prefix_counts_t prefix_counts_delta(const prefix_counts_t *before, const prefix_counts_t *after);

/* Hit tokens / prompt tokens; 0 without prompt tokens. */
double prefix_hit_rate(const prefix_counts_t *d);

#endif
