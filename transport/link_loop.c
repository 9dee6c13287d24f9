/* link_loop.c - the in-process link (see link.h): a queue of frames for the
 * in-process ranks and an inbox of their replies. */
#include "link.h"

#include <stdlib.h>
#include <string.h>

typedef struct frame {
    int rank;          /* destination (requests) or source (inbox) */
    uint8_t *buf;
    size_t len;
} frame_t;

typedef struct queue {
    frame_t *f;
    size_t head, n, cap;
} queue_t;

typedef struct link_loop {
    link_t base;       /* must be first */
    link_loop_handler_t handler;
    void *user;
    queue_t requests, inbox;
} link_loop_t;

static int queue_push(queue_t *q, frame_t f) {
    if (q->head > 0 && q->head == q->n) q->head = q->n = 0;
    if (q->n == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 8;
        frame_t *nf = realloc(q->f, cap * sizeof *nf);
        if (!nf) return -1;
        q->f = nf;
        q->cap = cap;
    }
    q->f[q->n++] = f;
    return 0;
}

static void queue_clear(queue_t *q) {
    for (size_t i = q->head; i < q->n; i++) free(q->f[i].buf);
    free(q->f);
    memset(q, 0, sizeof *q);
}

static int loop_send(link_t *l, int rank, uint8_t *buf, size_t len, spex_err_t *err) {
    link_loop_t *k = (link_loop_t *)l;
    if (rank <= 0 || rank >= l->world) {
        free(buf);
        return spex_fail(err, "loopback: no rank %d (world %d)", rank, l->world);
    }
    if (queue_push(&k->requests, (frame_t){rank, buf, len})) {
        free(buf);
        return spex_fail(err, "loopback: out of memory");
    }
    return 0;
}

static int loop_flush(link_t *l, double deadline, spex_err_t *err) {
    (void)l, (void)deadline, (void)err;
    return 0;   /* sends complete at once: the request queue is the receive buffer */
}

/* Serve the oldest request: its reply (if any) goes to the inbox. */
static int serve_one(link_loop_t *k, spex_err_t *err) {
    frame_t r = k->requests.f[k->requests.head++];
    uint8_t *reply = NULL;
    size_t rlen = 0;
    int rc = k->handler(k->user, r.rank, r.buf, r.len, &reply, &rlen, err);
    free(r.buf);
    if (rc) { free(reply); return -1; }
    if (reply && queue_push(&k->inbox, (frame_t){r.rank, reply, rlen})) {
        free(reply);
        return spex_fail(err, "loopback: out of memory");
    }
    return 0;
}

static int loop_recv(link_t *l, int from, double deadline, int *src, uint8_t **buf, size_t *len, spex_err_t *err) {
    link_loop_t *k = (link_loop_t *)l;
    (void)deadline;
    for (;;) {
        for (size_t i = k->inbox.head; i < k->inbox.n; i++) {
            if (from != LINK_ANY && k->inbox.f[i].rank != from) continue;
            frame_t f = k->inbox.f[i];
            memmove(k->inbox.f + i, k->inbox.f + i + 1, (k->inbox.n - i - 1) * sizeof f);
            k->inbox.n--;
            *src = f.rank;
            *buf = f.buf;
            *len = f.len;
            return 0;
        }
        if (k->requests.head == k->requests.n) return 1;   /* nobody left who could answer */
        if (serve_one(k, err)) return -1;
    }
}

static void loop_destroy(link_t *l) {
    link_loop_t *k = (link_loop_t *)l;
    if (!k) return;
    queue_clear(&k->requests);
    queue_clear(&k->inbox);
    free(k);
}

link_t *link_loop_create(int world, link_loop_handler_t handler, void *user, spex_err_t *err) {
    if (world < 2 || !handler) { spex_fail(err, "loopback: needs at least one worker rank"); return NULL; }
    link_loop_t *k = calloc(1, sizeof *k);
    if (!k) { spex_fail(err, "loopback: out of memory"); return NULL; }
    k->base = (link_t){.self = 0, .world = world, .in_process = true, .send = loop_send, .flush = loop_flush, .recv = loop_recv,
                       .destroy = loop_destroy};
    k->handler = handler;
    k->user = user;
    return &k->base;
}
