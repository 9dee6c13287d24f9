/* link_mpi.c - the MPI link (see link.h): MPI_Isend for every frame, receives
 * by MPI_Improbe + MPI_Mrecv, and waits that poll with a deadline (MPI_Test /
 * MPI_Improbe, backing off from sched_yield to short sleeps so idle ranks leave
 * the cores to the ones computing). */
#include "link.h"

#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/clock.h"

#define LINK_TAG 7

typedef struct pending {
    MPI_Request req;
    uint8_t *buf;
    int rank;
} pending_t;

typedef struct link_mpi {
    link_t base;       /* must be first */
    pending_t *pend;
    int n_pend, cap;
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

static int mpi_recv(link_t *l, int from, double deadline, int *src, uint8_t **buf, size_t *len, spex_err_t *err) {
    link_mpi_t *k = (link_mpi_t *)l;
    int spins = 0;
    for (;;) {
        int flag = 0;
        MPI_Message msg;
        MPI_Status st;
        progress(k);
        if (MPI_Improbe(from == LINK_ANY ? MPI_ANY_SOURCE : from, LINK_TAG, MPI_COMM_WORLD, &flag, &msg, &st) !=
            MPI_SUCCESS)
            return spex_fail(err, "mpi: MPI_Improbe failed");
        if (flag) {
            int count = 0;
            MPI_Get_count(&st, MPI_BYTE, &count);
            uint8_t *b = malloc(count > 0 ? (size_t)count : 1);
            if (!b) return spex_fail(err, "mpi: out of memory for a %d-byte message from rank %d", count, st.MPI_SOURCE);
            if (MPI_Mrecv(b, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
                free(b);
                return spex_fail(err, "mpi: receive from rank %d failed", st.MPI_SOURCE);
            }
            *src = st.MPI_SOURCE;
            *buf = b;
            *len = (size_t)count;
            return 0;
        }
        if (spex_now() > deadline) return 1;
        backoff(&spins);
    }
}

static void mpi_destroy(link_t *l) {
    link_mpi_t *k = (link_mpi_t *)l;
    if (!k) return;
    progress(k);
    /* Still in flight (peer gone): let MPI drop the request; the buffer must
     * outlive it, so it is deliberately not freed (the job is ending anyway). */
    for (int i = 0; i < k->n_pend; i++) MPI_Request_free(&k->pend[i].req);
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
    k->base.destroy = mpi_destroy;
    return &k->base;
}
