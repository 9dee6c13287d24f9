/* http.h - the HTTP front end of `spex serve` (libmicrohttpd).
 *
 *   POST /v1/completions, POST /v1/chat/completions   (stream: Server-Sent Events)
 *   GET  /v1/models, /v1/models/{name}, /health, /metrics
 *   POST /tokenize, /detokenize                         (server/tokenize_routes.h)
 *   OPTIONS (any of them), with a CORS origin             (server/cors.h)
 *
 * Threads: libmicrohttpd runs one thread per connection. A handler parses and
 * tokenizes the request, submits its choices to the scheduler (one request
 * each, server/choices.h), and then only waits on their output (the
 * scheduler's mutex + condition variable); it never touches the engine. Streaming responses are produced by a content-reader
 * callback that blocks until the next text delta. While waiting, a handler
 * polls its socket: a client that hangs up cancels its request, which frees
 * the sequence and its KV cache at the next step.
 *
 * The server starts before the model is loaded (so /health can say
 * "loading"); http_server_attach() makes the API live.
 *
 * Security: binds 127.0.0.1 unless told otherwise; with an API key every
 * endpoint except /health needs "Authorization: Bearer <key>"; bodies are
 * limited in size; nothing a request says can name a file. Connections are
 * bounded by server/conn_guard.h: header, body and keep-alive deadlines, a
 * per-client-address cap, and eviction of connections that only hold a slot,
 * so idle or byte-by-byte clients cannot lock out others (/health included). */
#ifndef SPEX_HTTP_H
#define SPEX_HTTP_H

#include <stddef.h>

#include "coordinator/serve/metrics.h"
#include "server/api.h"

typedef struct http_config {
    const char *host;          /* numeric address or name; default 127.0.0.1 */
    int port;                  /* 0 = any free port */
    const char *api_key;       /* NULL = no authentication */
    size_t max_body_bytes;     /* larger bodies get 413 */
    const char *model_name;    /* for /v1/models and the responses' "model" */
    unsigned max_connections;  /* concurrent connections (threads) */
    unsigned max_per_client;   /* connections from one client address (0 = max_connections) */
    double header_timeout;     /* s from accept (or the last answer) to a complete header (server/conn_guard.h) */
    double body_timeout;       /* s from the header to the end of the body */
    double idle_timeout;       /* s a keep-alive connection may wait for its next request */
    metrics_t *metrics;        /* not owned; may be NULL */
    const char *cors_origin;   /* Access-Control-Allow-Origin value; NULL = no CORS (OPTIONS gets 405) */
    const char *tls_cert_pem, *tls_key_pem;   /* both set: HTTPS (libmicrohttpd with GnuTLS); PEM text */
} http_config_t;

typedef struct http_server http_server_t;

/* Bind and start serving (only /health and /metrics answer until attach). */
http_server_t *http_server_start(const http_config_t *cfg, spex_err_t *err);
/* The port actually bound (useful with port 0). */
int http_server_port(const http_server_t *srv);
/* Make the completion endpoints live. api (and what it points to) must stay
 * valid until http_server_stop returns. */
void http_server_attach(http_server_t *srv, const api_ctx_t *api);
/* Stop accepting new connections; requests in progress continue. */
void http_server_quiesce(http_server_t *srv);
/* Wait (up to timeout_s) until every submitted request's answer has been
 * sent: after the scheduler finished or cancelled them, streams still have to
 * write their last event and [DONE]. */
void http_server_drain(http_server_t *srv, double timeout_s);
/* Close every connection, join the connection threads, free. */
void http_server_stop(http_server_t *srv);

#endif
