/* bench_http.h - the HTTP client of the load generator (`spex bench serve`):
 * POST a JSON body to `spex serve` and read the Server-Sent Events stream it
 * answers with, event by event as it arrives (so a caller can timestamp
 * tokens). libcurl does the HTTP (connection, chunked transfer, status); this
 * file only splits the body into events. One connection per request. A non-200
 * answer is returned as an error carrying the status and the start of its body.
 * http_get fetches a whole small body (GET /metrics before and after a row). */
#ifndef SPEX_CLI_BENCH_HTTP_H
#define SPEX_CLI_BENCH_HTTP_H

#include <stddef.h>

#include "core/error.h"
#include "core/strbuf.h"

/* Called with one event's data (NUL-terminated, without "data: "); return
 * nonzero to stop reading (the connection is closed). */
typedef int (*sse_event_fn)(void *user, const char *data, size_t len);

typedef struct http_target {
    const char *host;      /* numeric address or name */
    int port;
    const char *api_key;   /* NULL: no Authorization header */
} http_target_t;

/* libcurl's process-wide setup: once before client threads start (0, or -1
 * with err), and http_global_cleanup once after they have all ended. */
int http_global_init(spex_err_t *err);
void http_global_cleanup(void);

/* POST body to path and feed the SSE events to on_event. Returns 0 once the
 * server closed the stream after a 200 (or on_event asked to stop); -1 with
 * err (and *status, if not NULL, the HTTP status or 0 when there was none). */
int http_post_sse(const http_target_t *t, const char *path, const char *body, size_t len, sse_event_fn on_event,
                  void *user, int *status, spex_err_t *err);

/* GET path; on a 200, 0 with the body in *body (NUL-terminated, the caller
 * sb_frees it); -1 with err otherwise. */
int http_get(const http_target_t *t, const char *path, strbuf_t *body, spex_err_t *err);

#endif
