/* bench_http.c - see bench_http.h. */
#include "cli/bench_http.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

/* One request's state, shared with libcurl's write callback. */
typedef struct sse_reader {
    CURL *curl;
    strbuf_t buf;          /* body bytes not yet handed out (the whole body if not a 200) */
    sse_event_fn on_event;
    void *user;
    bool stopped;          /* on_event asked to stop */
} sse_reader_t;

int http_global_init(spex_err_t *err) {
    CURLcode cc = curl_global_init(CURL_GLOBAL_DEFAULT);
    return cc == CURLE_OK ? 0 : spex_fail(err, "libcurl: %s", curl_easy_strerror(cc));
}

void http_global_cleanup(void) { curl_global_cleanup(); }

static long response_status(CURL *c) {
    long st = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    return st;
}

/* Hand every complete event in r->buf to the callback and keep the rest;
 * returns 1 when the callback asked to stop. */
static int split_events(sse_reader_t *r) {
    strbuf_t *buf = &r->buf;
    size_t start = 0;
    char *end;
    while ((end = buf->n > start ? strstr(buf->p + start, "\n\n") : NULL)) {
        *end = '\0';
        const char *ev = buf->p + start;
        if (!strncmp(ev, "data: ", 6) && r->on_event(r->user, ev + 6, (size_t)(end - ev) - 6)) return 1;
        start = (size_t)(end - buf->p) + 2;
    }
    memmove(buf->p, buf->p + start, buf->n - start);
    sb_truncate(buf, buf->n - start);
    return 0;
}

/* libcurl's write callback: returning less than it was given ends the transfer. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *user) {
    sse_reader_t *r = user;
    size_t n = size * nmemb;
    if (n == 0) return 0;
    sb_add(&r->buf, data, n);
    if (r->buf.oom) return 0;
    if (response_status(r->curl) != 200) return n;   /* an error: keep its body for the message */
    if (split_events(r)) { r->stopped = true; return 0; }
    return n;
}

/* Content-Type, no "Expect: 100-continue" round trip, and the API key if any. */
static struct curl_slist *request_headers(const http_target_t *t) {
    strbuf_t auth = {0};
    if (t->api_key) sb_printf(&auth, "Authorization: Bearer %s", t->api_key);
    const char *lines[] = {"Content-Type: application/json", "Expect:", t->api_key ? auth.p : NULL};
    struct curl_slist *h = NULL, *next;
    for (size_t i = 0; i < sizeof lines / sizeof *lines && lines[i]; i++) {
        if (!(next = curl_slist_append(h, lines[i]))) { curl_slist_free_all(h); h = NULL; break; }
        h = next;
    }
    if (auth.oom) { curl_slist_free_all(h); h = NULL; }
    sb_free(&auth);
    return h;
}

/* http://host:port/path, with an IPv6 address in brackets. */
static char *request_url(const http_target_t *t, const char *path) {
    strbuf_t u = {0};
    bool v6 = strchr(t->host, ':') != NULL;
    sb_printf(&u, "http://%s%s%s:%d%s", v6 ? "[" : "", t->host, v6 ? "]" : "", t->port, path);
    return sb_take(&u, NULL);
}

static void set_request(sse_reader_t *r, const char *url, struct curl_slist *headers, const char *body, size_t len,
                        char *why) {
    curl_easy_setopt(r->curl, CURLOPT_URL, url);
    curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->curl, CURLOPT_ERRORBUFFER, why);   /* CURL_ERROR_SIZE bytes */
    curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L);       /* client threads: no SIGALRM */
}

/* The outcome of a finished transfer as 0, or -1 with err. */
static int transfer_result(const http_target_t *t, const sse_reader_t *r, CURLcode cc, long st, const char *why,
                           spex_err_t *err) {
    if (r->stopped || (cc == CURLE_OK && st == 200)) return 0;
    if (r->buf.oom) return spex_fail(err, "out of memory");
    if (cc != CURLE_OK && st == 0)
        return spex_fail(err, "cannot reach %s:%d: %s", t->host, t->port, why[0] ? why : curl_easy_strerror(cc));
    if (st == 200) return spex_fail(err, "receive: %s", why[0] ? why : curl_easy_strerror(cc));
    return spex_fail(err, "HTTP %ld: %.300s", st, r->buf.p ? r->buf.p : "(no answer)");
}

int http_post_sse(const http_target_t *t, const char *path, const char *body, size_t len, sse_event_fn on_event,
                  void *user, int *status, spex_err_t *err) {
    if (status) *status = 0;
    sse_reader_t r = {.curl = curl_easy_init(), .on_event = on_event, .user = user};
    struct curl_slist *headers = request_headers(t);
    char *url = request_url(t, path), why[CURL_ERROR_SIZE] = "";
    int rc = -1;
    if (!r.curl || !headers || !url) {
        spex_fail(err, "out of memory");
    } else {
        set_request(&r, url, headers, body, len, why);
        CURLcode cc = curl_easy_perform(r.curl);
        long st = response_status(r.curl);
        if (status) *status = (int)st;
        rc = transfer_result(t, &r, cc, st, why, err);
    }
    sb_free(&r.buf);
    free(url);
    curl_slist_free_all(headers);
    curl_easy_cleanup(r.curl);
    return rc;
}

/* libcurl's write callback of http_get: the whole body into a strbuf. */
static size_t on_get_body(char *data, size_t size, size_t nmemb, void *user) {
    strbuf_t *b = user;
    sb_add(b, data, size * nmemb);
    return b->oom ? 0 : size * nmemb;
}

static int get_result(const http_target_t *t, const strbuf_t *body, CURLcode cc, long st, const char *why,
                      spex_err_t *err) {
    if (body->oom) return spex_fail(err, "out of memory");
    if (cc != CURLE_OK)
        return spex_fail(err, "cannot reach %s:%d: %s", t->host, t->port, why[0] ? why : curl_easy_strerror(cc));
    if (st != 200) return spex_fail(err, "HTTP %ld: %.300s", st, body->p ? body->p : "(no answer)");
    return 0;
}

int http_get(const http_target_t *t, const char *path, strbuf_t *body, spex_err_t *err) {
    CURL *c = curl_easy_init();
    struct curl_slist *headers = request_headers(t);
    char *url = request_url(t, path), why[CURL_ERROR_SIZE] = "";
    int rc = -1;
    if (!c || !headers || !url) {
        spex_fail(err, "out of memory");
    } else {
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_get_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, why);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        CURLcode cc = curl_easy_perform(c);
        rc = get_result(t, body, cc, response_status(c), why, err);
    }
    if (!body->p) sb_str(body, "");
    free(url);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return rc;
}
