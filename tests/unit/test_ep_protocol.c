/* test_ep_protocol.c - rank 0's side of the protocol (coordinator/ep/ep_protocol.h)
 * in one process, against worker/ code behind the loopback link, and the one
 * formatter of rank lists (transport/link.h):
 *   - link_format_ranks: ascending, comma-separated, empty, cut with ", ...";
 *   - shutdown: every worker acknowledges; a silent worker is named;
 *   - hello: a worker without a model refuses, named as an in-process rank,
 *     and the protocol is broken afterwards (requests fail at once). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/ep/ep_protocol.h"
#include "transport/link.h"
#include "worker/worker.h"

/* ---------------------------------------------------------------- rank lists */

static bool in_mask(const void *user, int rank) { return ((const bool *)user)[rank]; }

Test(link_ranks, ascending_and_comma_separated) {
    bool mask[6] = {false, true, false, true, true, false};
    char out[64];
    cr_assert_str_eq(link_format_ranks(6, in_mask, mask, out, sizeof out), "1, 3, 4");
    mask[1] = mask[3] = false;
    cr_assert_str_eq(link_format_ranks(6, in_mask, mask, out, sizeof out), "4");
    mask[4] = false;
    cr_assert_str_eq(link_format_ranks(6, in_mask, mask, out, sizeof out), "", "nobody: empty");
}

Test(link_ranks, cut_when_too_small) {
    bool mask[100];
    for (int r = 0; r < 100; r++) mask[r] = r > 0;
    char out[40];
    link_format_ranks(100, in_mask, mask, out, sizeof out);
    cr_assert(strlen(out) < sizeof out);
    cr_assert(!strncmp(out, "1, 2, 3", 7), "%s", out);
    cr_assert(strstr(out, ", ...") && !strcmp(out + strlen(out) - 5, ", ..."), "%s", out);
}

/* ---------------------------------------------------------------- loopback workers */

typedef struct workers {
    worker_t *w[4];
    int world;
    int silent_rank;    /* this rank never answers */
} workers_t;

static int handle(void *u, int rank, const uint8_t *msg, size_t len, uint8_t **reply, size_t *rlen, spex_err_t *err) {
    workers_t *ws = u;
    bool stop;
    int rc = worker_handle(ws->w[rank], msg, len, reply, rlen, &stop, err);
    if (rank == ws->silent_rank) { free(*reply); *reply = NULL; }
    return rc;
}

/* world - 1 in-process workers without a model (they refuse a hello, acknowledge a shutdown). */
static ep_protocol_t *protocol(workers_t *ws, int world, int silent, double timeout) {
    spex_err_t err = {{0}};
    memset(ws, 0, sizeof *ws);
    ws->world = world;
    ws->silent_rank = silent;
    for (int r = 1; r < world; r++) cr_assert((ws->w[r] = worker_create_refusing(r, "no model here", &err)), "%s", err.msg);
    ep_protocol_t *p = ep_protocol_create(link_loop_create(world, handle, ws, &err), timeout, &err);
    cr_assert(p, "%s", err.msg);
    cr_assert_eq(ep_protocol_world(p), world);
    return p;
}

static void workers_free(workers_t *ws) {
    for (int r = 1; r < ws->world; r++) worker_free(ws->w[r]);
}

/* A shutdown to 3 loopback workers, `silent` never answering (0: none). */
static int shutdown_case(int silent, double timeout, spex_err_t *err) {
    workers_t ws;
    ep_protocol_t *p = protocol(&ws, 4, silent, 5.0);
    int rc = ep_protocol_shutdown(p, silent ? 1 : 0, timeout, err);
    ep_protocol_free(p);
    workers_free(&ws);
    return rc;
}

Test(ep_protocol, shutdown_acknowledged_by_every_worker) {
    spex_err_t err = {{0}};
    cr_assert_eq(shutdown_case(0, 5.0, &err), 0, "%s", err.msg);
}

Test(ep_protocol, shutdown_names_the_silent_worker) {
    spex_err_t err = {{0}};
    cr_assert_neq(shutdown_case(2, 0.2, &err), 0);
    cr_assert(strstr(err.msg, "rank 2 did not acknowledge the shutdown"), "%s", err.msg);
}

Test(ep_protocol, refused_hello_names_the_rank_and_breaks_the_protocol) {
    workers_t ws;
    ep_protocol_t *p = protocol(&ws, 3, 0, 5.0);
    spex_err_t err = {{0}};
    placement_t *pl = placement_balanced(8, 3, PLACEMENT_CONTIGUOUS, &err);
    ep_stats_t *st = ep_stats_create(2, 8, 3, &err);
    cr_assert(pl && st, "%s", err.msg);
    ep_hello_t h = {.model_id = 42, .n_layers = 2, .n_routed = 8, .hidden = 16, .dispatch_codec = "raw",
                    .combine_codec = "raw", .combine = SPEX__COMBINE_MODE__COMBINE_EXPERT, .pl = pl};
    cr_assert_neq(ep_protocol_hello(p, &h, st, &err), 0);
    cr_assert(strstr(err.msg, "in-process expert rank 1 refused the session: no model here"), "%s", err.msg);
    cr_assert_eq(st->rank[1].experts_hosted, 4);
    cr_assert(ep_protocol_broken(p));
    cr_assert_neq(ep_protocol_fetch_stats(p, st, &err), 0);
    cr_assert(strstr(err.msg, "a worker rank failed earlier"), "%s", err.msg);
    ep_protocol_free(p);
    ep_stats_free(st);
    placement_free(pl);
    workers_free(&ws);
}
