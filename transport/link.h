/* link.h - moving frames (transport/wire.h) between ranks, with deadlines.
 *
 * Two implementations share this interface: link_mpi.c (nonblocking MPI point
 * to point between processes) and link_loop.c (in-process loopback: the
 * "worker ranks" are handler calls in this process; world size 1 and tests).
 * The coordinator's MoE backend and the worker loop only see a link_t, so one
 * code path serves a single process and an mpirun job.
 *
 * Every wait is bounded: flush() and recv() take an absolute deadline
 * (spex_now() seconds, core/clock.h) and report a timeout instead of blocking
 * forever. */
#ifndef SPEX_LINK_H
#define SPEX_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/error.h"

#define LINK_ANY (-1)

typedef struct link link_t;

struct link {
    int self, world;   /* this rank, number of ranks */
    bool in_process;   /* loopback: the "ranks" are in this process (for messages) */
    /* Queue buf[0 .. len) for `rank`; the link takes ownership of the malloc'ed
     * buffer (also on failure) and frees it once sent. Does not block. */
    int (*send)(link_t *l, int rank, uint8_t *buf, size_t len, spex_err_t *err);
    /* Wait until every queued send has completed. 0 ok; 1 deadline passed (err
     * names the ranks that did not take their message); -1 error. */
    int (*flush)(link_t *l, double deadline, spex_err_t *err);
    /* Next frame from `from` (or LINK_ANY) into a malloc'ed *buf; *src = sender.
     * 0 got one; 1 deadline passed (err untouched); -1 error. Queued sends keep
     * progressing while it waits. */
    int (*recv)(link_t *l, int from, double deadline, int *src, uint8_t **buf, size_t *len, spex_err_t *err);
    /* Optional (NULL: nothing to do): let queued sends and arriving frames
     * progress without waiting. A rank that computes while messages are in
     * flight calls it between stages: MPI moves a large message only while the
     * receiver is inside MPI, so without it the transfer would start at recv(). */
    void (*poll)(link_t *l);
    void (*destroy)(link_t *l);
};

/* "1, 3, 4": the ranks 0 <= r < world for which in(user, r) holds, ascending,
 * written into out[cap] for messages that name the ranks at fault ("rank %s did
 * not ..."); ends in ", ..." when out is too small for all of them. Returns out. */
const char *link_format_ranks(int world, bool (*in)(const void *user, int rank), const void *user, char *out,
                              size_t cap);

/* The in-process link: rank 0 is the caller, ranks 1..world-1 are served by
 * `handler` when the caller waits for a message (so their work shows up as the
 * caller's wait time, as it would with real ranks). handler returns 0 and
 * optionally a malloc'ed reply frame for rank 0; -1 stops the link. */
typedef int (*link_loop_handler_t)(void *user, int rank, const uint8_t *msg, size_t len, uint8_t **reply,
                                   size_t *reply_len, spex_err_t *err);
link_t *link_loop_create(int world, link_loop_handler_t handler, void *user, spex_err_t *err);

/* MPI_COMM_WORLD point to point (MPI must be initialised: transport/mpi_world.h). */
link_t *link_mpi_create(spex_err_t *err);

/* Link emulation (link_delay.c): `inner` with every frame it sends held back
 * `delay` seconds first (a per-message latency applied by the sending side, for
 * scaling studies on one machine: --link-delay-ms). Takes ownership of `inner`
 * (also on failure); delay <= 0 returns `inner` itself; NULL inner gives NULL. */
link_t *link_delay_wrap(link_t *inner, double delay, spex_err_t *err);

#endif
