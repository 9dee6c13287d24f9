/* link_delay.c - link emulation: a fixed delay on every message a link sends
 * (see link.h, link_delay_wrap). This machine's kernel has no netem, so a
 * scaling study on one host cannot add network latency below the transport;
 * this decorator adds it above: a frame given to send() is held for `delay`
 * seconds and only then handed to the wrapped link. Frames are released in
 * the order they were sent, whenever the caller is inside send, flush, recv or poll
 * (the ranks always wait in one of those between computations), so frames
 * sent together travel together: a dispatch to W ranks costs one delay, not W.
 * It emulates latency only (the bandwidth is the wrapped link's, e.g. tbf). */
#include "link.h"

#include <stdlib.h>
#include <time.h>

typedef struct held {
    double release;    /* spex_now() at which the frame goes to the inner link */
    int rank;
    uint8_t *buf;
    size_t len;
} held_t;

typedef struct link_delay {
    link_t base;       /* must be first */
    link_t *inner;
    double delay;
    held_t *q;         /* FIFO: release times ascend */
    size_t head, n, cap;
} link_delay_t;

/* Hand every frame whose time has come to the inner link. */
static int release_due(link_delay_t *k, spex_err_t *err) {
    double now = spex_now();
    while (k->head < k->n && k->q[k->head].release <= now) {
        held_t h = k->q[k->head++];
        if (k->inner->send(k->inner, h.rank, h.buf, h.len, err)) return -1;
    }
    if (k->head == k->n) k->head = k->n = 0;
    return 0;
}

/* Wait until `t` (spex_now() seconds), or at most ~1 ms: sleep until 100 us
 * before `t` (a sleep overshoots by the timer slack, ~50-100 us), then poll
 * the clock without yielding: on a loaded machine a yield can lose the core for
 * a whole time slice (milliseconds), which would add to every emulated delay. */
static void nap_until(double t) {
    double dt = t - spex_now();
    if (dt <= 0) return;
    if (dt > 100e-6) {
        dt -= 100e-6;
        if (dt > 1e-3) dt = 1e-3;
        struct timespec ts = {0, (long)(dt * 1e9)};
        nanosleep(&ts, NULL);
        return;
    }
    while (spex_now() < t) {}
}

static int delay_send(link_t *l, int rank, uint8_t *buf, size_t len, spex_err_t *err) {
    link_delay_t *k = (link_delay_t *)l;
    if (k->n == k->cap) {
        if (k->head > 0) {   /* reuse the released prefix */
            for (size_t i = k->head; i < k->n; i++) k->q[i - k->head] = k->q[i];
            k->n -= k->head;
            k->head = 0;
        } else {
            size_t cap = k->cap ? 2 * k->cap : 16;
            held_t *nq = realloc(k->q, cap * sizeof *nq);
            if (!nq) { free(buf); return spex_fail(err, "link delay: out of memory"); }
            k->q = nq;
            k->cap = cap;
        }
    }
    k->q[k->n++] = (held_t){spex_now() + k->delay, rank, buf, len};
    return release_due(k, err);
}

static int delay_flush(link_t *l, double deadline, spex_err_t *err) {
    link_delay_t *k = (link_delay_t *)l;
    for (;;) {
        if (release_due(k, err)) return -1;
        if (k->head == k->n) return k->inner->flush(k->inner, deadline, err);
        if (spex_now() > deadline) {
            spex_fail(err, "link delay: %zu message(s) still held at the deadline (delay %.3f s)", k->n - k->head,
                      k->delay);
            return 1;
        }
        double next = k->q[k->head].release;
        nap_until(next < deadline ? next : deadline);
    }
}

static int delay_recv(link_t *l, int from, double deadline, int *src, uint8_t **buf, size_t *len, spex_err_t *err) {
    link_delay_t *k = (link_delay_t *)l;
    for (;;) {
        if (release_due(k, err)) return -1;
        bool holding = k->head < k->n;
        double until = holding && k->q[k->head].release < deadline ? k->q[k->head].release : deadline;
        int rc = k->inner->recv(k->inner, from, until, src, buf, len, err);
        if (rc != 1) return rc;
        if (!holding || spex_now() > deadline) return 1;
        nap_until(until);   /* the inner link gave up early (loopback: nobody to answer yet) */
    }
}

static void delay_poll(link_t *l) {
    link_delay_t *k = (link_delay_t *)l;
    spex_err_t ignored;   /* a send failure shows again in the next flush or recv */
    release_due(k, &ignored);
    if (k->inner->poll) k->inner->poll(k->inner);
}

static void delay_destroy(link_t *l) {
    link_delay_t *k = (link_delay_t *)l;
    if (!k) return;
    for (size_t i = k->head; i < k->n; i++) free(k->q[i].buf);
    free(k->q);
    k->inner->destroy(k->inner);
    free(k);
}

link_t *link_delay_wrap(link_t *inner, double delay, spex_err_t *err) {
    if (!inner) return NULL;
    if (delay <= 0) return inner;
    link_delay_t *k = calloc(1, sizeof *k);
    if (!k) {
        inner->destroy(inner);
        spex_fail(err, "link delay: out of memory");
        return NULL;
    }
    k->base = (link_t){.self = inner->self, .world = inner->world, .in_process = inner->in_process,
                       .send = delay_send, .flush = delay_flush, .recv = delay_recv, .poll = delay_poll, .destroy = delay_destroy};
    k->inner = inner;
    k->delay = delay;
    return &k->base;
}
