/* worker_loop.c - worker_run(): a worker rank's life over an MPI link.
 * Every wait is bounded (worker.h): a coordinator that stops talking for
 * idle_timeout seconds, or does not take a reply within rank_timeout, ends
 * the loop with an error naming rank 0. While a hello loads experts the
 * worker sends "loading" messages, so the coordinator's deadline measures
 * silence, not the time a large shard takes to load. */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "transport/wire.h"

typedef struct loop_ctx {
    link_t *link;
    double last;
} loop_ctx_t;

static void send_loading(void *user, int done, int total) {
    loop_ctx_t *c = user;
    double now = spex_now();
    if (now - c->last < 0.5 && done < total) return;
    c->last = now;
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__Loading m = SPEX__LOADING__INIT;
    m.done = (uint32_t)done;
    m.total = (uint32_t)total;
    h.body_case = SPEX__HEADER__BODY_LOADING;
    h.loading = &m;
    spex_err_t err;
    wire_send(c->link, 0, &h, NULL, 0, NULL, &err);   /* best effort: a lost heartbeat only shortens the wait */
}

/* Test hooks: a worker that goes silent, or vanishes, at its n-th dispatch. */
static int test_fault(const worker_run_options_t *o, const uint8_t *buf, size_t len, int *dispatches) {
    wire_header_t *h;
    const uint8_t *p;
    size_t pl;
    spex_err_t e;
    if ((!o->stall_at && !o->exit_at) || wire_unpack(buf, len, 0, &h, &p, &pl, &e)) return 0;
    int is_dispatch = h->body_case == SPEX__HEADER__BODY_DISPATCH;
    wire_header_free(h);
    if (!is_dispatch) return 0;
    ++*dispatches;
    if (o->exit_at && *dispatches == o->exit_at) return WORKER_TEST_EXIT;
    if (o->stall_at && *dispatches == o->stall_at) {
        spex_log("test hook: stalling at dispatch %d", *dispatches);
        for (;;) {
            struct timespec t = {1, 0};
            nanosleep(&t, NULL);
        }
    }
    return 0;
}

static int flush(link_t *link, const worker_run_options_t *o, spex_err_t *err) {
    int rc = link->flush(link, spex_now() + o->rank_timeout, err);
    if (rc == 1) return spex_err_prefix(err, "rank %d: the coordinator did not take a reply: ", link->self);
    return rc;
}

int worker_run(worker_t *w, link_t *link, const worker_run_options_t *o, spex_err_t *err) {
    loop_ctx_t ctx = {link, 0.0};
    worker_set_progress(w, send_loading, &ctx);
    int dispatches = 0;
    for (;;) {
        uint8_t *buf = NULL, *reply = NULL;
        size_t len = 0, rlen = 0;
        int src;
        double t0 = spex_now(), deadline = o->idle_timeout > 0 ? t0 + o->idle_timeout : 1e300;
        int rc = link->recv(link, 0, deadline, &src, &buf, &len, err);
        worker_note_idle(w, spex_now() - t0);
        if (rc == 1)
            return spex_fail(err, "rank %d: no message from the coordinator (rank 0) for %.0f s: it is gone or stuck",
                             link->self, o->idle_timeout);
        if (rc) return -1;
        if ((rc = test_fault(o, buf, len, &dispatches))) { free(buf); return rc; }
        bool stop = false;
        rc = worker_handle(w, buf, len, &reply, &rlen, &stop, err);
        free(buf);
        if (rc) return -1;
        /* The previous reply must have been taken before this one goes out; this
         * one may stay in flight while the next request is read: the coordinator
         * takes it when it needs it (micro-batch overlap), not at once. */
        if (reply && flush(link, o, err)) { free(reply); return -1; }
        if (reply && link->send(link, 0, reply, rlen, err)) return -1;
        if (stop) return flush(link, o, err);
    }
}
