/* bench_metrics.c - see bench_metrics.h. */
#include "cli/bench_metrics.h"

#include <stdio.h>
#include <string.h>

#include "core/strbuf.h"

/* The value of an unlabelled sample `name value` in a Prometheus text body;
 * false when absent. */
static bool sample_value(const char *body, const char *name, double *v) {
    size_t n = strlen(name);
    for (const char *line = body; line; line = strchr(line, '\n')) {
        if (*line == '\n') line++;
        if (strncmp(line, name, n) != 0) continue;
        const char *at = line + n;
        if (*at == '{') {   /* a label set (model_name): skip it */
            const char *close = strchr(at, '}');
            if (!close) continue;
            at = close + 1;
        }
        if (*at == ' ') return sscanf(at + 1, "%lf", v) == 1;
    }
    return false;
}

int prefix_counts_read(const http_target_t *t, prefix_counts_t *out, spex_err_t *err) {
    strbuf_t body = {0};
    *out = (prefix_counts_t){0};
    int rc = http_get(t, "/metrics", &body, err);
    if (rc == 0) {
        bool prompt = sample_value(body.p, "spex_prompt_tokens_total", &out->prompt_tokens);
        out->on = sample_value(body.p, "spex_prefix_cache_hit_tokens_total", &out->hit_tokens) &&
                  sample_value(body.p, "spex_prefix_cache_hits_total", &out->hits) &&
                  sample_value(body.p, "spex_prefix_cache_lookups_total", &out->lookups);
        if (!prompt) rc = spex_fail(err, "/metrics has no spex_prompt_tokens_total");
    }
    sb_free(&body);
    return rc;
}

prefix_counts_t prefix_counts_delta(const prefix_counts_t *before, const prefix_counts_t *after) {
    return (prefix_counts_t){
        .on = before->on && after->on,
        .prompt_tokens = after->prompt_tokens - before->prompt_tokens,
        .hit_tokens = after->hit_tokens - before->hit_tokens,
        .hits = after->hits - before->hits,
        .lookups = after->lookups - before->lookups,
    };
}

double prefix_hit_rate(const prefix_counts_t *d) {
    return d->prompt_tokens > 0 ? d->hit_tokens / d->prompt_tokens : 0;
}
