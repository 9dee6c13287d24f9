/* http.c - see http.h.
 *
 * libmicrohttpd calls on_request several times per request: once when the
 * headers are in (routing, authentication and a Content-Length check answer
 * right there), once per chunk of body, and once more with no data, when the
 * body is complete and the request is dispatched. Per-request state lives in
 * a conn_t (MHD's con_cls), freed by on_completed. A streaming response owns
 * a stream_t, freed by MHD through stream_free when the response ends or the
 * client goes away. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "core/clock.h"
#include "core/log.h"
#include "server/api_response.h"
#include "server/body_gate.h"
#include "server/choices.h"
#include "server/conn_guard.h"
#include "server/cors.h"
#include "server/tokenize_routes.h"
#include "server/json_str.h"

/* Status recorded for a client that hung up before its answer (nginx's convention). */
#define STATUS_CLIENT_CLOSED 499
/* Request bodies parsed at once (server/body_gate.h). */
#define PARSE_SLOTS 2
/* How long a waiting handler sleeps between checks of its socket. */
#define WAIT_SLICE_SECONDS 0.25

struct http_server {
    struct MHD_Daemon *d;
    http_config_t cfg;
    char *api_key, *model_name;
    char *tls_cert, *tls_key;   /* copies, valid while the daemon runs */
    _Atomic(const api_ctx_t *) api;
    atomic_int active;      /* connections with a submitted request whose answer is not fully sent */
    int port;
    long started;
    conn_guard_t *guard;    /* deadlines and slots per connection */
    body_gate_t *gate;      /* bodies parsed at once */
    pthread_t sweeper;      /* enforces the guard's deadlines */
    bool sweeping;
    atomic_bool stop_sweeper;
};

typedef enum route { R_NONE, R_COMPLETIONS, R_CHAT, R_MODELS, R_MODEL, R_HEALTH, R_METRICS, R_TOKENIZE, R_DETOKENIZE } route_t;

/* Routes answered to POST (the others to GET). */
static bool is_post(route_t r) { return r == R_COMPLETIONS || r == R_CHAT || r == R_TOKENIZE || r == R_DETOKENIZE; }

typedef struct conn {
    route_t route;
    const char *endpoint;   /* metrics label */
    strbuf_t body;
    size_t received;
    bool too_large;
    bool active;            /* counted in srv->active until on_completed */
} conn_t;

typedef struct stream {
    http_server_t *srv;
    const api_ctx_t *api;
    const char *endpoint;   /* metrics label */
    api_request_t rq;
    choice_set_t cs;
    char id[48];
    long created;
    strbuf_t out;
    size_t out_off;
    int fd;
    bool started, finished;
    bool failed;            /* closed by us (out of memory), not by the client */
} stream_t;

/* ---------------------------------------------------------------- responses */

static enum MHD_Result respond(http_server_t *srv, struct MHD_Connection *c, const conn_t *cn, int status,
                               const char *ctype, strbuf_t *body) {
    size_t len;
    char *data = sb_take(body, &len);
    if (!data) {   /* the body could not be built */
        status = 500;
        data = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\"}}\n");
        if (!data) return MHD_NO;
        len = strlen(data);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(data); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", ctype);
    cors_headers(r, srv->cfg.cors_origin);
    if (status == 405) MHD_add_response_header(r, "Allow", is_post(cn->route) ? "POST" : "GET");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    metrics_request(srv->cfg.metrics, cn->endpoint, status);
    return ret;
}

static enum MHD_Result respond_json(http_server_t *srv, struct MHD_Connection *c, const conn_t *cn, int status,
                                    strbuf_t *body) {
    sb_str(body, "\n");
    return respond(srv, c, cn, status, "application/json", body);
}

static enum MHD_Result respond_error(http_server_t *srv, struct MHD_Connection *c, const conn_t *cn,
                                     const api_error_t *e) {
    strbuf_t b = {0};
    api_error_json(&b, e);
    return respond_json(srv, c, cn, e->status, &b);
}

static enum MHD_Result fail(http_server_t *srv, struct MHD_Connection *c, const conn_t *cn, int status,
                            const char *type, const char *code, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static enum MHD_Result fail(http_server_t *srv, struct MHD_Connection *c, const conn_t *cn, int status,
                            const char *type, const char *code, const char *fmt, ...) {
    api_error_t e = {.status = status, .type = type, .code = code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return respond_error(srv, c, cn, &e);
}

/* ---------------------------------------------------------------- routing, auth */

static route_t route_of(const char *url, const char *model_name, const char **label) {
    static const struct { const char *path; route_t r; } table[] = {
        {"/v1/completions", R_COMPLETIONS}, {"/v1/chat/completions", R_CHAT}, {"/v1/models", R_MODELS},
        {"/health", R_HEALTH},               {"/metrics", R_METRICS},
        {"/tokenize", R_TOKENIZE},           {"/detokenize", R_DETOKENIZE},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(url, table[i].path)) { *label = table[i].path; return table[i].r; }
    *label = "other";
    if (!strncmp(url, "/v1/models/", 11) && !strcmp(url + 11, model_name)) { *label = "/v1/models"; return R_MODEL; }
    return R_NONE;
}

static bool method_ok(route_t r, const char *method) {
    return !strcmp(method, is_post(r) ? "POST" : "GET");
}

/* Constant-time comparison, so response time says nothing about the key. The
 * scheme is case-insensitive (RFC 7235: "bearer KEY" is fine), then one or more spaces. */
static bool authorized(const http_server_t *srv, struct MHD_Connection *c) {
    if (!srv->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer", 6) || h[6] != ' ') return false;
    const char *k = h + 6, *want = srv->api_key;
    while (*k == ' ') k++;
    size_t lk = strlen(k), lw = strlen(want);
    unsigned char diff = (unsigned char)(lk != lw);
    for (size_t i = 0; i < lw; i++) diff |= (unsigned char)(want[i] ^ (i < lk ? k[i] : 0));
    return diff == 0;
}

/* True if the client closed its end (so nobody will read the answer). */
static bool peer_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int conn_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* ---------------------------------------------------------------- GET endpoints */

/* A JSON body printed from a cJSON tree, which it frees; a NULL tree (out of
 * memory while building it) becomes respond's 500. */
static enum MHD_Result respond_cjson(http_server_t *srv, struct MHD_Connection *c, const conn_t *cn, int status,
                                     cJSON *root) {
    strbuf_t b = {0};
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    if (text) sb_str(&b, text);
    else b.oom = true;
    cJSON_free(text);
    cJSON_Delete(root);
    return respond_json(srv, c, cn, status, &b);
}

/* {"status":status[,"reason":reason]}, NULL when out of memory. */
static cJSON *health_json(const char *status, const char *reason) {
    cJSON *j = cJSON_CreateObject();
    if (!cJSON_AddStringToObject(j, "status", status) || (reason && !cJSON_AddStringToObject(j, "reason", reason))) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static enum MHD_Result get_health(http_server_t *srv, struct MHD_Connection *c, const conn_t *cn) {
    const api_ctx_t *api = atomic_load(&srv->api);
    char why[SPEX_ERR_MSG_MAX] = "";
    if (!api) return respond_cjson(srv, c, cn, 503, health_json("loading", NULL));
    if (!scheduler_ready(api->sched, why, sizeof why))
        return respond_cjson(srv, c, cn, 503, health_json("unavailable", why));
    return respond_cjson(srv, c, cn, 200, health_json("ok", NULL));
}

/* "max_model_len": the context length (as vLLM), once the model is loaded; false when out of memory. */
static bool add_max_model_len(const http_server_t *srv, cJSON *j) {
    const api_ctx_t *api = atomic_load(&srv->api);
    return !api || api->context <= 0 || cJSON_AddNumberToObject(j, "max_model_len", api->context);
}

/* The model object of /v1/models, NULL when out of memory. */
static cJSON *model_json(const http_server_t *srv) {
    cJSON *j = cJSON_CreateObject();
    if (!cJSON_AddStringToObject(j, "id", srv->model_name) || !cJSON_AddStringToObject(j, "object", "model") ||
        !cJSON_AddNumberToObject(j, "created", (double)srv->started) ||
        !cJSON_AddStringToObject(j, "owned_by", "spex") || !add_max_model_len(srv, j)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* {"object":"list","data":[model]}, NULL when out of memory (model is freed either way). */
static cJSON *model_list_json(cJSON *model) {
    cJSON *j = cJSON_CreateObject(), *data;
    if (!model || !cJSON_AddStringToObject(j, "object", "list") || !(data = cJSON_AddArrayToObject(j, "data")) ||
        !cJSON_AddItemToArray(data, model)) {
        cJSON_Delete(model);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static enum MHD_Result get_models(http_server_t *srv, struct MHD_Connection *c, const conn_t *cn) {
    cJSON *model = model_json(srv);
    return respond_cjson(srv, c, cn, 200, cn->route == R_MODELS ? model_list_json(model) : model);
}

static enum MHD_Result get_metrics(http_server_t *srv, struct MHD_Connection *c, const conn_t *cn) {
    strbuf_t b = {0};
    if (srv->cfg.metrics) {
        size_t len;
        char *text = metrics_render(srv->cfg.metrics, &len);
        if (!text) return fail(srv, c, cn, 500, "server_error", NULL, "out of memory");
        sb_add(&b, text, len);
        free(text);
    }
    return respond(srv, c, cn, 200, "text/plain; version=0.0.4; charset=utf-8", &b);
}

/* ---------------------------------------------------------------- streaming */

/* The stream's status for /metrics is known only at its end: 200 when it
 * was delivered whole, 499 (nginx's "client closed request") when the client
 * went away first, 500 when we had to close it. */
static void stream_free(void *cls) {
    stream_t *st = cls;
    if (!st->finished && !st->failed) spex_log("http: %s: client went away, request cancelled", st->id);
    metrics_request(st->srv->cfg.metrics, st->endpoint, st->finished ? 200 : st->failed ? 500 : STATUS_CLIENT_CLOSED);
    choices_release(&st->cs);   /* cancels them if the client left early */
    api_request_free(&st->rq);
    sb_free(&st->out);
    free(st);
}

static void stream_chunk(stream_t *st, const api_delta_t *d) {
    int usage = st->rq.continuous_usage ? choices_tokens(&st->cs) : -1;
    api_chunk_sse(&st->out, &st->rq, st->api->tok, st->id, st->created, st->srv->model_name, d, usage);
}

/* The echoed prompt of choice i (prompt_lps: its logprobs, or NULL). */
static void stream_echo(stream_t *st, int i, const token_logprob_t *prompt_lps) {
    int usage = st->rq.continuous_usage ? choices_tokens(&st->cs) : -1;
    api_echo_chunk_sse(&st->out, &st->rq, st->api->tok, st->id, st->created, st->srv->model_name, i, prompt_lps, usage);
    st->cs.c[i].echo_sent = true;
}

/* First chunks: the role (chat) or the echoed prompt (completions with echo),
 * per choice. With logprobs the echo waits for the prefill: its chunk carries
 * the prompt tokens' logprobs (stream_poll). */
static void stream_open(stream_t *st) {
    st->started = true;
    for (int i = 0; i < st->cs.n; i++) {
        if (st->rq.kind == API_CHAT) stream_chunk(st, &(api_delta_t){.index = i, .text = "", .role = true});
        else if (st->rq.echo && !st->rq.params.prompt_logprobs) stream_echo(st, i, NULL);
    }
}

/* Choice i ended: its final chunk, or the error (which ends the stream). */
static bool stream_choice_end(stream_t *st, int i) {
    const sched_result_t *r = sched_req_result(st->cs.c[i].req);
    api_error_t e;
    st->cs.c[i].finished = true;
    st->cs.c[i].tokens = r->n_tokens;
    if (api_result_error(r, &e)) {
        sb_str(&st->out, "data: ");
        api_error_json(&st->out, &e);
        sb_str(&st->out, "\n\n");
        return false;
    }
    stream_chunk(st, &(api_delta_t){.index = i, .text = st->rq.kind == API_CHAT ? NULL : "",
                                    .finish_reason = r->finish_reason});
    return true;
}

/* Every choice ended (or one failed): usage, [DONE]. */
static void stream_close(stream_t *st, bool ok) {
    if (ok && st->rq.include_usage)
        api_usage_chunk_sse(&st->out, &st->rq, st->id, st->created, st->srv->model_name, choices_tokens(&st->cs));
    sb_str(&st->out, "data: [DONE]\n\n");
    st->finished = true;
}

/* Wait a little for choice i and write what it produced. Returns 1 when
 * something was written, 0 when not, -1 on failure; *ended when it finished. */
static int stream_poll(stream_t *st, int i, double timeout, bool *ended) {
    choice_t *c = &st->cs.c[i];
    sched_update_t u;
    int tok_from = st->rq.params.logprobs ? c->tok_off : -1;
    if (sched_req_wait_tokens(c->req, c->text_off, tok_from, timeout, &u)) { sched_update_free(&u); return -1; }
    c->tokens = u.completion_tokens;
    bool echo = st->rq.echo && !c->echo_sent && (u.prompt_lps || u.done);
    if (echo) stream_echo(st, i, u.prompt_lps);
    if (u.len || u.n_toks)
        stream_chunk(st, &(api_delta_t){.index = i, .text = u.text ? u.text : "", .len = u.len, .toks = u.toks,
                                        .lps = u.lps, .n_toks = u.n_toks, .prev_end = c->prev_end});
    c->text_off += u.len;
    if (u.n_toks) {
        c->tok_off += u.n_toks;
        c->prev_end = u.toks[u.n_toks - 1].text_end;
    }
    *ended = u.done;
    int wrote = echo || u.len || u.n_toks || u.done;
    sched_update_free(&u);
    return wrote;
}

/* Produce the next event(s) into st->out, waiting for the engine if needed. */
static int stream_fill(stream_t *st) {
    if (!st->started) {
        stream_open(st);
        if (st->out.n || st->out.oom) return st->out.oom ? -1 : 0;
    }
    int open = 0, wrote = 0;
    for (int i = 0; i < st->cs.n; i++) open += !st->cs.c[i].finished;
    bool ok = true;
    for (int i = 0; i < st->cs.n && ok; i++) {
        if (st->cs.c[i].finished) continue;
        bool ended = false;
        int w = stream_poll(st, i, open == 1 ? WAIT_SLICE_SECONDS : 0.01, &ended);
        if (w < 0) return -1;
        wrote += w;
        if (ended) { ok = stream_choice_end(st, i); open--; }
    }
    if (!ok || open == 0) stream_close(st, ok);
    else if (!wrote && peer_gone(st->fd)) return -1;   /* stream_free logs and cancels */
    if (!st->out.oom) return 0;
    spex_log("http: %s: out of memory for the stream, closing it", st->id);
    st->failed = true;
    return -1;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_t *st = cls;
    while (st->out_off >= st->out.n) {
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        sb_reset(&st->out);
        st->out_off = 0;
        if (stream_fill(st)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = st->out.n - st->out_off < max ? st->out.n - st->out_off : max;
    memcpy(buf, st->out.p + st->out_off, n);
    st->out_off += n;
    return (ssize_t)n;
}

/* Takes ownership of rq and cs. */
static enum MHD_Result start_stream(http_server_t *srv, const api_ctx_t *api, struct MHD_Connection *c,
                                    const conn_t *cn, api_request_t *rq, choice_set_t *cs) {
    stream_t *st = calloc(1, sizeof *st);
    struct MHD_Response *r =
        st ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free) : NULL;
    if (!r) {
        if (st) free(st);
        choices_release(cs);
        api_request_free(rq);
        return fail(srv, c, cn, 500, "server_error", NULL, "out of memory");
    }
    st->srv = srv;
    st->api = api;
    st->endpoint = cn->endpoint;
    st->rq = *rq;
    st->cs = *cs;
    st->fd = conn_fd(c);
    st->created = (long)time(NULL);
    api_new_id(rq->kind, st->id, sizeof st->id);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    cors_headers(r, srv->cfg.cors_origin);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);   /* stream_free runs when MHD is done with it (and counts the status) */
    return ret;
}

/* ---------------------------------------------------------------- completions */

/* Wait for one choice's end, watching for the client leaving (false then). */
static bool wait_choice(sched_req_t *req, int fd) {
    size_t off = 0;
    for (;;) {
        sched_update_t u;
        int rc = sched_req_wait(req, off, WAIT_SLICE_SECONDS, &u);
        off += u.len;
        bool done = u.done;
        sched_update_free(&u);
        if (done) return true;
        if (rc != 0 || peer_gone(fd)) return false;
    }
}

/* Non-streaming: wait for every choice, then answer. Takes ownership of rq and cs. */
static enum MHD_Result wait_and_respond(http_server_t *srv, const api_ctx_t *api, struct MHD_Connection *c,
                                        const conn_t *cn, api_request_t *rq, choice_set_t *cs) {
    int fd = conn_fd(c);
    for (int i = 0; i < cs->n; i++) {
        if (wait_choice(cs->c[i].req, fd)) continue;
        choices_release(cs);   /* cancels: frees the sequences at the next step */
        spex_log("http: client went away before the answer, request cancelled");
        api_request_free(rq);
        metrics_request(srv->cfg.metrics, cn->endpoint, STATUS_CLIENT_CLOSED);
        return MHD_NO;
    }
    const sched_result_t **res = calloc((size_t)cs->n, sizeof *res);
    api_error_t e = {0};
    bool failed = !res;
    if (!res) api_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
    for (int i = 0; !failed && i < cs->n; i++) failed = api_result_error(res[i] = sched_req_result(cs->c[i].req), &e);
    enum MHD_Result ret;
    if (failed) {
        ret = respond_error(srv, c, cn, &e);
    } else {
        char id[48];
        api_new_id(rq->kind, id, sizeof id);
        strbuf_t b = {0};
        api_response_json(&b, rq, api->tok, id, (long)time(NULL), srv->model_name, res, cs->n);
        ret = respond_json(srv, c, cn, 200, &b);
    }
    free(res);
    choices_release(cs);
    api_request_free(rq);
    return ret;
}

/* The body as a request (server/api.h). */
static int parse_body(const api_ctx_t *api, const conn_t *cn, api_request_t *rq, api_error_t *e) {
    return api_parse_body(api, cn->route == R_CHAT ? API_CHAT : API_COMPLETION, cn->body.p, cn->body.n, rq, e);
}

static enum MHD_Result post_completion(http_server_t *srv, struct MHD_Connection *c, conn_t *cn) {
    const api_ctx_t *api = atomic_load(&srv->api);
    if (!api) return fail(srv, c, cn, 503, "server_error", "loading", "the model is still loading");
    if (cn->too_large)
        return fail(srv, c, cn, 413, "invalid_request_error", "request_too_large",
                    "the request body exceeds %zu bytes", srv->cfg.max_body_bytes);
    api_request_t rq;
    api_error_t e;
    body_gate_enter(srv->gate);   /* the tree may be ~40x the body: a few at a time */
    int bad = parse_body(api, cn, &rq, &e);
    body_gate_leave(srv->gate, cn->body.n);
    if (bad) return respond_error(srv, c, cn, &e);
    choice_set_t cs;
    const char *param = NULL;
    spex_err_t err = {0};
    sched_status_t st = choices_submit(api->sched, &rq, &cs, &param, &err);
    if (st != SCHED_OK) {
        api_submit_error(st, param, err.msg, &e);
        api_request_free(&rq);
        return respond_error(srv, c, cn, &e);
    }
    cn->active = true;   /* until MHD has sent the whole answer (on_completed) */
    atomic_fetch_add(&srv->active, 1);
    return rq.stream ? start_stream(srv, api, c, cn, &rq, &cs) : wait_and_respond(srv, api, c, cn, &rq, &cs);
}

/* POST /tokenize, /detokenize (server/tokenize_routes.h). */
static enum MHD_Result post_tokens(http_server_t *srv, struct MHD_Connection *c, conn_t *cn) {
    const api_ctx_t *api = atomic_load(&srv->api);
    if (!api) return fail(srv, c, cn, 503, "server_error", "loading", "the model is still loading");
    if (cn->too_large)
        return fail(srv, c, cn, 413, "invalid_request_error", "request_too_large",
                    "the request body exceeds %zu bytes", srv->cfg.max_body_bytes);
    strbuf_t b = {0};
    api_error_t e;
    const char *body = cn->body.p ? cn->body.p : "";
    int rc = cn->route == R_TOKENIZE ? tokenize_answer(api, body, cn->body.n, &b, &e)
                                     : detokenize_answer(api, body, cn->body.n, &b, &e);
    if (rc == 0) return respond_json(srv, c, cn, 200, &b);
    sb_free(&b);
    return respond_error(srv, c, cn, &e);
}

/* ---------------------------------------------------------------- connection guard */

static int slot_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci && ci->socket_context ? (int)(intptr_t)ci->socket_context - 1 : -1;
}

static void set_phase(http_server_t *srv, struct MHD_Connection *c, conn_phase_t phase) {
    conn_guard_phase(srv->guard, slot_of(c), phase, spex_now());
}

/* Every TCP connection, from accept to close: a slot in the guard (stored as slot + 1). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    http_server_t *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (*socket_context) conn_guard_close(srv->guard, (int)(intptr_t)*socket_context - 1);
        *socket_context = NULL;
        return;
    }
    const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *ad = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!fd) return;
    const struct sockaddr *sa = ad ? ad->client_addr : NULL;
    socklen_t len = !sa ? 0 : sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int slot = conn_guard_open(srv->guard, fd->connect_fd, sa, len, spex_now());
    *socket_context = slot >= 0 ? (void *)(intptr_t)(slot + 1) : NULL;
}

static void *sweep_loop(void *arg) {
    http_server_t *srv = arg;
    struct timespec slice = {0, 100 * 1000 * 1000};
    while (!atomic_load(&srv->stop_sweeper)) {
        conn_guard_sweep(srv->guard, spex_now());
        nanosleep(&slice, NULL);
    }
    return NULL;
}

/* ---------------------------------------------------------------- MHD callbacks */

typedef struct lengths_seen {
    const char *first;
    bool differ;
} lengths_seen_t;

static enum MHD_Result note_length(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    lengths_seen_t *l = cls;
    if (!key || strcasecmp(key, "Content-Length") || !value) return MHD_YES;
    if (!l->first) l->first = value;
    else if (strcmp(l->first, value)) l->differ = true;
    return MHD_YES;
}

/* Two Content-Length headers that disagree make the body's end ambiguous
 * (request smuggling behind a proxy): RFC 9110 says refuse (issue 16 item 7). */
static bool lengths_conflict(struct MHD_Connection *c) {
    lengths_seen_t l = {0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, note_length, &l);
    return l.differ;
}

/* First call: route, method, key and declared size, answered at once when wrong. */
static enum MHD_Result on_headers(http_server_t *srv, struct MHD_Connection *c, conn_t *cn, const char *url,
                                  const char *method) {
    cn->route = route_of(url, srv->model_name, &cn->endpoint);
    if (cn->route == R_NONE)
        return fail(srv, c, cn, 404, "invalid_request_error", "not_found", "no such endpoint: %.200s %.200s", method,
                    url);
    if (srv->cfg.cors_origin && !strcmp(method, "OPTIONS")) {   /* a browser's preflight (server/cors.h) */
        metrics_request(srv->cfg.metrics, cn->endpoint, 204);
        return cors_preflight(c, srv->cfg.cors_origin);
    }
    if (!method_ok(cn->route, method))
        return fail(srv, c, cn, 405, "invalid_request_error", "method_not_allowed", "%s does not accept %.20s",
                    cn->endpoint, method);
    if (cn->route != R_HEALTH && !authorized(srv, c))
        return fail(srv, c, cn, 401, "invalid_request_error", "invalid_api_key",
                    "a valid API key is needed: 'Authorization: Bearer <key>'");
    if (lengths_conflict(c))
        return fail(srv, c, cn, 400, "invalid_request_error", "invalid_header",
                    "two Content-Length headers with different values");
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
    if (declared > srv->cfg.max_body_bytes)
        return fail(srv, c, cn, 413, "invalid_request_error", "request_too_large",
                    "the request body exceeds %zu bytes", srv->cfg.max_body_bytes);
    if (declared) sb_reserve(&cn->body, (size_t)declared);   /* exact size: no doubling */
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    http_server_t *srv = cls;
    conn_t *cn = *con_cls;
    if (!cn) {
        if (!(cn = calloc(1, sizeof *cn))) return MHD_NO;
        *con_cls = cn;
        set_phase(srv, c, CG_BODY);   /* the header is in: the body has its own deadline */
        return on_headers(srv, c, cn, url, method);
    }
    if (*upload_data_size) {   /* body chunk: keep up to the limit, then only count */
        cn->received += *upload_data_size;
        if (cn->received > srv->cfg.max_body_bytes) cn->too_large = true;
        else sb_add(&cn->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        /* a client streaming far past the limit is cut off rather than read to the end */
        return cn->received > 16 * srv->cfg.max_body_bytes + (1u << 20) ? MHD_NO : MHD_YES;
    }
    set_phase(srv, c, CG_BUSY);   /* the request is complete: no deadline while it is answered */
    switch (cn->route) {
    case R_HEALTH: return get_health(srv, c, cn);
    case R_METRICS: return get_metrics(srv, c, cn);
    case R_MODELS:
    case R_MODEL: return get_models(srv, c, cn);
    case R_TOKENIZE:
    case R_DETOKENIZE: return post_tokens(srv, c, cn);
    default: return post_completion(srv, c, cn);
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)toe;
    http_server_t *srv = cls;
    conn_t *cn = *con_cls;
    set_phase(srv, c, CG_IDLE);   /* keep-alive: the next request has idle_timeout to arrive */
    if (!cn) return;
    if (cn->active) atomic_fetch_sub(&srv->active, 1);
    size_t cap = cn->body.cap;
    sb_free(&cn->body);
    body_gate_released(cap);
    free(cn);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    if (n && msg[n - 1] == '\n') msg[n - 1] = '\0';
    /* what libmicrohttpd says when a stream reader stops early: stream_fill
     * has already logged why (client gone, out of memory), with the request id */
    if (strstr(msg, "Application reported internal error")) return;
    spex_log("http: %s", msg);
}

/* ---------------------------------------------------------------- lifecycle */

/* Our own listening socket, so a bind error can be reported precisely. */
static int listen_on(const char *host, int port, int *family, spex_err_t *err) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    int g = getaddrinfo(host, ps, &hints, &ai);
    if (g) return spex_fail(err, "--host '%s': %s", host, gai_strerror(g));
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol), one = 1;
    *family = ai->ai_family;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 256)) {
        spex_fail(err, "cannot listen on %s port %d: %s", host, port, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int bound_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len)) return -1;
    return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* HTTPS options for MHD_OPTION_ARRAY when a certificate is configured (items stays {END} otherwise). */
static int tls_options(http_server_t *srv, const http_config_t *cfg, struct MHD_OptionItem *items, spex_err_t *err) {
    if (!cfg->tls_cert_pem && !cfg->tls_key_pem) return 0;
    if (!cfg->tls_cert_pem || !cfg->tls_key_pem) return spex_fail(err, "--tls-cert and --tls-key go together");
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return spex_fail(err, "--tls-cert: this libmicrohttpd was built without TLS (GnuTLS) support");
    if (!(srv->tls_cert = strdup(cfg->tls_cert_pem)) || !(srv->tls_key = strdup(cfg->tls_key_pem)))
        return spex_fail(err, "out of memory");
    items[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key};
    items[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, srv->tls_cert};
    items[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return 0;
}

http_server_t *http_server_start(const http_config_t *cfg, spex_err_t *err) {
    http_server_t *srv = calloc(1, sizeof *srv);
    if (!srv) { spex_fail(err, "out of memory"); return NULL; }
    srv->cfg = *cfg;
    srv->api_key = cfg->api_key ? strdup(cfg->api_key) : NULL;
    srv->model_name = strdup(cfg->model_name ? cfg->model_name : "spex");
    srv->started = (long)time(NULL);
    atomic_init(&srv->api, NULL);
    atomic_init(&srv->active, 0);
    atomic_init(&srv->stop_sweeper, false);
    unsigned max_conn = cfg->max_connections ? cfg->max_connections : 256u;
    conn_limits_t lim = {.max_conn = max_conn, .per_client = cfg->max_per_client ? cfg->max_per_client : max_conn,
                         .header_timeout = cfg->header_timeout > 0 ? cfg->header_timeout : 10,
                         .body_timeout = cfg->body_timeout > 0 ? cfg->body_timeout : 30,
                         .idle_timeout = cfg->idle_timeout > 0 ? cfg->idle_timeout : 15};
    if (!(srv->guard = conn_guard_create(&lim)) || !(srv->gate = body_gate_create(PARSE_SLOTS)) || pthread_create(&srv->sweeper, NULL, sweep_loop, srv)) {
        spex_fail(err, "out of memory");
        http_server_stop(srv);
        return NULL;
    }
    srv->sweeping = true;
    int family = AF_INET;
    int fd = listen_on(cfg->host ? cfg->host : "127.0.0.1", cfg->port, &family, err);
    if (fd < 0) { http_server_stop(srv); return NULL; }
    srv->port = bound_port(fd);
    struct MHD_OptionItem tls[3] = {{MHD_OPTION_END, 0, NULL}};
    if (tls_options(srv, cfg, tls, err)) { close(fd); http_server_stop(srv); return NULL; }
    unsigned flags = (tls[0].option != MHD_OPTION_END ? MHD_USE_TLS : 0) | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_AUTO |
                     MHD_USE_ERROR_LOG | (family == AF_INET6 ? MHD_USE_IPv6 : 0);
    srv->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
                              MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
                              /* the guard holds max_conn; room beyond it for connections it is closing */
                              MHD_OPTION_CONNECTION_LIMIT, max_conn * 2 + 8,
                              MHD_OPTION_CONNECTION_TIMEOUT, 300u, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    if (!srv->d) {
        close(fd);
        spex_fail(err, "libmicrohttpd could not start on port %d%s", srv->port,
                  srv->tls_cert ? " (is --tls-cert a PEM certificate matching the PEM key --tls-key?)" : "");
        http_server_stop(srv);
        return NULL;
    }
    return srv;
}

int http_server_port(const http_server_t *srv) { return srv->port; }

void http_server_attach(http_server_t *srv, const api_ctx_t *api) { atomic_store(&srv->api, api); }

void http_server_quiesce(http_server_t *srv) {
    if (!srv || !srv->d) return;
    MHD_socket fd = MHD_quiesce_daemon(srv->d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void http_server_drain(http_server_t *srv, double timeout_s) {
    if (!srv || !srv->d) return;
    struct timespec slice = {0, 10 * 1000 * 1000};
    for (double waited = 0; atomic_load(&srv->active) > 0 && waited < timeout_s; waited += 0.01)
        nanosleep(&slice, NULL);
}

void http_server_stop(http_server_t *srv) {
    if (!srv) return;
    if (srv->d) MHD_stop_daemon(srv->d);
    if (srv->sweeping) {
        atomic_store(&srv->stop_sweeper, true);
        pthread_join(srv->sweeper, NULL);
    }
    conn_guard_free(srv->guard);
    body_gate_free(srv->gate);
    free(srv->api_key);
    free(srv->model_name);
    free(srv->tls_cert);
    free(srv->tls_key);
    free(srv);
}
