/* http_client.c - see http_client.h. */
#include "http_client.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/strbuf.h"

static int connect_to(const http_target_t *t, spex_err_t *err) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", t->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int g = getaddrinfo(t->host, ps, &hints, &ai);
    if (g) return spex_fail(err, "%s: %s", t->host, gai_strerror(g));
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen)) {
        close(fd);
        fd = -1;
    }
    if (fd < 0) spex_fail(err, "cannot connect to %s:%d: %s", t->host, t->port, strerror(errno));
    freeaddrinfo(ai);
    return fd;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_request(int fd, const http_target_t *t, const char *path, const char *body, size_t len) {
    strbuf_t h = {0};
    sb_printf(&h, "POST %s HTTP/1.0\r\nHost: %s:%d\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n",
              path, t->host, t->port, len);
    if (t->api_key) sb_printf(&h, "Authorization: Bearer %s\r\n", t->api_key);
    sb_str(&h, "\r\n");
    int rc = h.oom || send_all(fd, h.p, h.n) || send_all(fd, body, len) ? -1 : 0;
    sb_free(&h);
    return rc;
}

/* Hand every complete event in buf[0, *n) to the callback; keep the rest. */
static int split_events(strbuf_t *buf, sse_event_fn on_event, void *user) {
    size_t start = 0;
    char *end;
    while ((end = buf->n > start ? strstr(buf->p + start, "\n\n") : NULL)) {
        *end = '\0';
        const char *ev = buf->p + start;
        if (!strncmp(ev, "data: ", 6) && on_event(user, ev + 6, (size_t)(end - ev) - 6)) return 1;
        start = (size_t)(end - buf->p) + 2;
    }
    memmove(buf->p, buf->p + start, buf->n - start);
    buf->n -= start;
    buf->p[buf->n] = '\0';
    return 0;
}

/* Parse the status line once the headers are in; returns the header length or 0 if incomplete. */
static size_t parse_head(const strbuf_t *buf, int *status) {
    const char *e = buf->p ? strstr(buf->p, "\r\n\r\n") : NULL;
    if (!e) return 0;
    *status = 0;
    sscanf(buf->p, "HTTP/%*d.%*d %d", status);
    return (size_t)(e - buf->p) + 4;
}

int http_post_sse(const http_target_t *t, const char *path, const char *body, size_t len, sse_event_fn on_event,
                  void *user, int *status, spex_err_t *err) {
    int st = 0, fd = connect_to(t, err), rc = -1;
    if (status) *status = 0;
    if (fd < 0) return -1;
    if (send_request(fd, t, path, body, len)) {
        close(fd);
        return spex_fail(err, "cannot send the request: %s", strerror(errno));
    }
    strbuf_t buf = {0};
    size_t head = 0;
    char chunk[16384];
    for (;;) {
        ssize_t r = recv(fd, chunk, sizeof chunk, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { spex_fail(err, "receive: %s", strerror(errno)); break; }
        if (r > 0) sb_add(&buf, chunk, (size_t)r);
        if (buf.oom) { spex_fail(err, "out of memory"); break; }
        if (!head && buf.n && (head = parse_head(&buf, &st))) {
            memmove(buf.p, buf.p + head, buf.n - head + 1);
            buf.n -= head;
        }
        if (head && st == 200 && split_events(&buf, on_event, user)) { rc = 0; break; }
        if (r == 0) {
            if (head && st == 200) rc = 0;
            else spex_fail(err, "HTTP %d: %.300s", st, buf.p ? buf.p : "(no answer)");
            break;
        }
    }
    if (status) *status = st;
    sb_free(&buf);
    close(fd);
    return rc;
}
