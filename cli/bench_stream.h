/* bench_stream.h - one streamed request of the load generator (`spex bench
 * serve`): POST it, and timestamp its tokens as the SSE chunks arrive
 * (stream_options.continuous_usage_stats, so every chunk says how many tokens
 * exist so far). Time to first token = request sent -> the first chunk whose
 * usage counts a token; a chunk that brings n tokens after a gap t counts as n
 * inter-token latencies of t / n (the convention of the server's /metrics).
 * Optionally collects the answer's text (a completion's `text`, a chat
 * chunk's `delta.content`), which a chat's next turn sends back. */
#ifndef SPEX_CLI_BENCH_STREAM_H
#define SPEX_CLI_BENCH_STREAM_H

#include <stdbool.h>

#include "cli/bench_http.h"
#include "cli/bench_stats.h"
#include "core/strbuf.h"

typedef struct bench_stream {
    double t0, t_prev;
    int tokens;
    bool first_seen, failed;   /* failed: the stream carried an error event */
    double ttft;
    samples_t itl;
    strbuf_t *text;            /* NULL: the text is not kept */
} bench_stream_t;

/* POST body to path (a streaming request) and fill *q (zeroed here except
 * q->text, which is appended to). 0 when the stream delivered at least one
 * token and no error event; -1 with err otherwise. Free q->itl after. */
int bench_stream_post(const http_target_t *t, const char *path, const strbuf_t *body, bench_stream_t *q,
                      spex_err_t *err);

#endif
