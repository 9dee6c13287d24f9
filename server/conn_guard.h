/* conn_guard.h - what libmicrohttpd does not bound by itself: how long a
 * connection may take to send its request, how long it may sit idle between
 * requests, and how many slots one client address may hold. Without it, 16
 * connections that send nothing (or one byte at a time) held every slot of
 * `--max-connections 16` for minutes, /health included (issue 16 item 2).
 *
 * A connection is in one phase at a time, each with its own deadline:
 *   CG_HEADERS  accepted, its request header not complete: header_timeout from accept
 *   CG_BODY     header in, body arriving:                   body_timeout from the header
 *   CG_BUSY     request dispatched (generating, streaming): no deadline (the
 *               engine, cancellation and the client's own disconnect end it)
 *   CG_IDLE     answer sent, keep-alive:                    idle_timeout from the answer
 * conn_guard_sweep() shuts down (shutdown(2)) every connection past its
 * deadline; libmicrohttpd's thread for it then sees the end of the stream and
 * closes it, which calls conn_guard_close().
 *
 * Slots: a new connection beyond max_conn evicts the oldest connection that
 * has not sent a complete request (CG_HEADERS or CG_IDLE), so a newcomer such
 * as a /health probe always gets in while some slot is only held, not used;
 * beyond per_client connections from one address it evicts that address's
 * oldest such connection, and is refused when the address has none. Every
 * function takes the time (seconds, any epoch) so tests need no clock. All
 * functions are thread-safe. */
#ifndef SPEX_CONN_GUARD_H
#define SPEX_CONN_GUARD_H

#include <stddef.h>
#include <sys/socket.h>

typedef enum conn_phase { CG_HEADERS, CG_BODY, CG_BUSY, CG_IDLE } conn_phase_t;

typedef struct conn_limits {
    unsigned max_conn;       /* connections held at once */
    unsigned per_client;     /* connections from one client address */
    double header_timeout;   /* s from accept to a complete request header */
    double body_timeout;     /* s from the header to the end of the body */
    double idle_timeout;     /* s a keep-alive connection may wait for its next request */
} conn_limits_t;

typedef struct conn_guard conn_guard_t;

conn_guard_t *conn_guard_create(const conn_limits_t *lim);
void conn_guard_free(conn_guard_t *g);

/* A new connection on socket fd from addr. Returns its slot (>= 0), or -1:
 * refused (the caller closes it; it has been shut down already). */
int conn_guard_open(conn_guard_t *g, int fd, const struct sockaddr *addr, socklen_t addr_len, double now);
void conn_guard_phase(conn_guard_t *g, int slot, conn_phase_t phase, double now);
void conn_guard_close(conn_guard_t *g, int slot);

/* Shut down every connection past its phase's deadline; returns how many. */
int conn_guard_sweep(conn_guard_t *g, double now);

/* Connections held (not yet closed, evicted ones excluded). */
unsigned conn_guard_count(conn_guard_t *g);

#endif
