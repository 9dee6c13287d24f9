/* http_client.h - a minimal HTTP/1.0 client for Server-Sent Events, used by
 * the load generator (`spex bench serve`) against `spex serve`.
 *
 * One request per TCP connection: "POST path HTTP/1.0" with a JSON body. An
 * HTTP/1.0 response has no chunked encoding; the body runs until the server
 * closes the connection, so an event stream can be read as it arrives. Each
 * SSE event's "data: " payload is passed to a callback the moment its blank
 * line is read (so a caller can timestamp tokens). A non-200 answer is
 * returned as an error carrying the status and the start of its body. */
#ifndef SPEX_HTTP_CLIENT_H
#define SPEX_HTTP_CLIENT_H

#include <stddef.h>

#include "core/error.h"

/* Called with one event's data (NUL-terminated, without "data: "); return
 * nonzero to stop reading (the connection is closed). */
typedef int (*sse_event_fn)(void *user, const char *data, size_t len);

typedef struct http_target {
    const char *host;      /* numeric address or name */
    int port;
    const char *api_key;   /* NULL: no Authorization header */
} http_target_t;

/* POST body to path and feed the SSE events to on_event. Returns 0 once the
 * server closed the stream after a 200; -1 with err (and *status, if not
 * NULL, the HTTP status or 0 when there was none). */
int http_post_sse(const http_target_t *t, const char *path, const char *body, size_t len, sse_event_fn on_event,
                  void *user, int *status, spex_err_t *err);

#endif
