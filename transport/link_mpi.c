/* link_mpi.c - the MPI link (see link.h): MPI_Isend for every frame, receives
 * by MPI_Improbe + MPI_Imrecv, and waits that poll with a deadline (MPI_Test /
 * MPI_Improbe, backing off from sched_yield to short sleeps so idle ranks leave
 * the cores to the ones computing).
 *
 * Early receives: a frame is matched (Improbe) and its MPI_Imrecv posted as
 * soon as the rank is inside the link at all, in poll() as well as recv(), so
 * a large answer moves while the rank computes between poll() calls. Matched
 * frames wait in a FIFO in matching order, which MPI keeps per source: recv()
 * returns the oldest matched frame from `from` (or from anyone), exactly the
 * frame Improbe + Mrecv would have returned. */
#include "link.h"

#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

#define LINK_TAG 7

typedef struct pending {
    MPI_Request req;
    uint8_t *buf;
    int rank;
} pending_t;

typedef struct incoming {
    MPI_Request req;   /* MPI_REQUEST_NULL once complete */
    uint8_t *buf;
    int count, src;
} incoming_t;

typedef struct link_mpi {
    link_t base;       /* must be first */
    pending_t *pend;
    int n_pend, cap;
    incoming_t *in;    /* matched frames in matching order */
    int n_in, in_cap;
} link_mpi_t;

/* Poll pause: the first polls only yield, later ones sleep up to 200 us. */
static void backoff(int *spins) {
    if ((*spins)++ < 64) { sched_yield(); return; }
    long ns = *spins < 1000 ? 20000 : 200000;
    struct timespec t = {0, ns};
    nanosleep(&t, NULL);
}

static void progress(link_mpi_t *k) {
    for (int i = 0; i < k->n_pend;) {
        int done = 0;
        MPI_Test(&k->pend[i].req, &done, MPI_STATUS_IGNORE);
        if (!done) { i++; continue; }
        free(k->pend[i].buf);
        k->pend[i] = k->pend[--k->n_pend];
    }
}

static int mpi_send(link_t *l, int rank, uint8_t *buf, size_t len, spex_err_t *err) {
    link_mpi_t *k = (link_mpi_t *)l;
    if (rank < 0 || rank >= l->world || rank == l->self) {
        free(buf);
        return spex_fail(err, "mpi: cannot send to rank %d (world %d)", rank, l->world);
    }
    if (len > INT_MAX) {
        free(buf);
        return spex_fail(err, "mpi: a %zu-byte message to rank %d exceeds MPI's int count", len, rank);
    }
    if (k->n_pend == k->cap) {
        int cap = k->cap ? 2 * k->cap : 16;
        pending_t *np = realloc(k->pend, (size_t)cap * sizeof *np);
        if (!np) { free(buf); return spex_fail(err, "mpi: out of memory"); }
        k->pend = np;
        k->cap = cap;
    }
    pending_t *p = &k->pend[k->n_pend];
    if (MPI_Isend(buf, (int)len, MPI_BYTE, rank, LINK_TAG, MPI_COMM_WORLD, &p->req) != MPI_SUCCESS) {
        free(buf);
        return spex_fail(err, "mpi: MPI_Isend to rank %d failed", rank);
    }
    p->buf = buf;
    p->rank = rank;
    k->n_pend++;
    return 0;
}

static bool has_send_to(const void *user, int rank) {
    const link_mpi_t *k = user;
    for (int i = 0; i < k->n_pend; i++)
        if (k->pend[i].rank == rank) return true;
    return false;
}

static int mpi_flush(link_t *l, double deadline, spex_err_t *err) {
    link_mpi_t *k = (link_mpi_t *)l;
    int spins = 0;
    for (;;) {
        progress(k);
        if (k->n_pend == 0) return 0;
        if (spex_now() > deadline) break;
        backoff(&spins);
    }
    char ranks[256];
    link_format_ranks(l->world, has_send_to, k, ranks, sizeof ranks);
    spex_fail(err, "rank %s did not take %s message in time (dead or stuck?)", ranks,
              k->n_pend > 1 ? "their" : "its");
    return 1;
}

/* Match every frame that has arrived and post its receive; test the posted
 * ones (which is what moves their bytes). 0, or -1 with err set. */
static int match_incoming(link_mpi_t *k, spex_err_t *err) {
    for (;;) {
        int flag = 0;
        MPI_Message msg;
        MPI_Status st;
        if (MPI_Improbe(MPI_ANY_SOURCE, LINK_TAG, MPI_COMM_WORLD, &flag, &msg, &st) != MPI_SUCCESS)
            return spex_fail(err, "mpi: MPI_Improbe failed");
        if (!flag) break;
        int count = 0;
        MPI_Get_count(&st, MPI_BYTE, &count);
        if (k->n_in == k->in_cap) {
            int cap = k->in_cap ? 2 * k->in_cap : 16;
            incoming_t *ni = realloc(k->in, (size_t)cap * sizeof *ni);
            if (!ni) return spex_fail(err, "mpi: out of memory");
            k->in = ni;
            k->in_cap = cap;
        }
        incoming_t *e = &k->in[k->n_in];
        e->buf = malloc(count > 0 ? (size_t)count : 1);
        if (!e->buf) return spex_fail(err, "mpi: out of memory for a %d-byte message from rank %d", count, st.MPI_SOURCE);
        if (MPI_Imrecv(e->buf, count, MPI_BYTE, &msg, &e->req) != MPI_SUCCESS) {
            free(e->buf);
            return spex_fail(err, "mpi: receive from rank %d failed", st.MPI_SOURCE);
        }
        e->count = count;
        e->src = st.MPI_SOURCE;
        k->n_in++;
    }
    for (int i = 0; i < k->n_in; i++) {
        int done = 0;
        if (k->in[i].req != MPI_REQUEST_NULL && MPI_Test(&k->in[i].req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return spex_fail(err, "mpi: receive from rank %d failed", k->in[i].src);
    }
    return 0;
}

static void mpi_poll(link_t *l) {
    link_mpi_t *k = (link_mpi_t *)l;
    spex_err_t ignored;   /* a failure here shows again in the next recv(), which reports it */
    progress(k);
    match_incoming(k, &ignored);
}

/* Index of the oldest matched frame from `from`, or -1. */
static int oldest_from(const link_mpi_t *k, int from) {
    for (int i = 0; i < k->n_in; i++)
        if (from == LINK_ANY || k->in[i].src == from) return i;
    return -1;
}

static int mpi_recv(link_t *l, int from, double deadline, int *src, uint8_t **buf, size_t *len, spex_err_t *err) {
    link_mpi_t *k = (link_mpi_t *)l;
    int spins = 0;
    for (;;) {
        progress(k);
        if (match_incoming(k, err)) return -1;
        int i = oldest_from(k, from);
        if (i >= 0 && k->in[i].req == MPI_REQUEST_NULL) {   /* complete: hand it over, keep the order */
            *src = k->in[i].src;
            *buf = k->in[i].buf;
            *len = (size_t)k->in[i].count;
            memmove(&k->in[i], &k->in[i + 1], (size_t)(k->n_in - i - 1) * sizeof *k->in);
            k->n_in--;
            return 0;
        }
        if (spex_now() > deadline) return 1;
        if (i >= 0) sched_yield();   /* its bytes are moving: keep testing */
        else backoff(&spins);
    }
}

static void mpi_destroy(link_t *l) {
    link_mpi_t *k = (link_mpi_t *)l;
    if (!k) return;
    progress(k);
    /* Still in flight (peer gone): let MPI drop the request; the buffer must
     * outlive it, so it is deliberately not freed (the job is ending anyway). */
    for (int i = 0; i < k->n_pend; i++) MPI_Request_free(&k->pend[i].req);
    for (int i = 0; i < k->n_in; i++) {   /* same for a matched receive still moving */
        if (k->in[i].req == MPI_REQUEST_NULL) free(k->in[i].buf);
        else MPI_Request_free(&k->in[i].req);
    }
    free(k->in);
    free(k->pend);
    free(k);
}

link_t *link_mpi_create(spex_err_t *err) {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) { spex_fail(err, "mpi: MPI is not initialised"); return NULL; }
    link_mpi_t *k = calloc(1, sizeof *k);
    if (!k) { spex_fail(err, "mpi: out of memory"); return NULL; }
    MPI_Comm_rank(MPI_COMM_WORLD, &k->base.self);
    MPI_Comm_size(MPI_COMM_WORLD, &k->base.world);
    k->base.send = mpi_send;
    k->base.flush = mpi_flush;
    k->base.recv = mpi_recv;
    k->base.poll = mpi_poll;
    k->base.destroy = mpi_destroy;
    return &k->base;
}
