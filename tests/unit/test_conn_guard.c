/* test_conn_guard.c - server/conn_guard.h with an explicit clock and real
 * sockets (socketpairs: a shut-down end reads as end of stream on the peer):
 *   - each phase's deadline (header, body, keep-alive idle) cuts the connection,
 *     a busy one (request being answered) is never cut;
 *   - a newcomer beyond max_conn evicts the oldest connection that only holds
 *     a slot, never a busy one, and is refused when every slot is busy;
 *   - the per-client cap evicts that client's oldest waiting connection, not
 *     another client's, and refuses when it has none. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/conn_guard.h"

typedef struct pair {
    int server, client;
} pair_t;

static pair_t new_pair(void) {
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    return (pair_t){sv[0], sv[1]};
}

/* The server end was shut down: the client reads end of stream. */
static bool was_cut(pair_t p) {
    char c;
    return recv(p.client, &c, 1, MSG_DONTWAIT) == 0;
}

static struct sockaddr_in client(int last_octet) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(40000)};
    a.sin_addr.s_addr = htonl(0x7f000000u | (unsigned)last_octet);
    return a;
}

static int open_from(conn_guard_t *g, pair_t p, int octet, double now) {
    struct sockaddr_in a = client(octet);
    return conn_guard_open(g, p.server, (struct sockaddr *)&a, sizeof a, now);
}

Test(conn_guard, each_phase_has_its_deadline_and_busy_has_none) {
    conn_limits_t lim = {.max_conn = 8, .per_client = 8, .header_timeout = 5, .body_timeout = 10, .idle_timeout = 3};
    conn_guard_t *g = conn_guard_create(&lim);
    pair_t h = new_pair(), b = new_pair(), busy = new_pair(), idle = new_pair();
    int sh = open_from(g, h, 1, 0), sb = open_from(g, b, 1, 0), sy = open_from(g, busy, 1, 0), si = open_from(g, idle, 1, 0);
    cr_assert(sh >= 0 && sb >= 0 && sy >= 0 && si >= 0);
    conn_guard_phase(g, sb, CG_BODY, 1);     /* header in at t=1: body deadline 11 */
    conn_guard_phase(g, sy, CG_BUSY, 1);
    conn_guard_phase(g, si, CG_IDLE, 2);     /* answered at t=2: idle deadline 5 */
    cr_assert_eq(conn_guard_sweep(g, 4.9), 0);
    cr_assert_eq(conn_guard_sweep(g, 5.0), 2, "header (t=5) and keep-alive (t=5) deadlines");
    cr_assert(was_cut(h) && was_cut(idle) && !was_cut(b) && !was_cut(busy));
    cr_assert_eq(conn_guard_sweep(g, 11.0), 1);
    cr_assert(was_cut(b));
    cr_assert_eq(conn_guard_sweep(g, 1e6), 0, "a busy connection has no deadline");
    cr_assert(!was_cut(busy));
    cr_assert_eq(conn_guard_count(g), 1);
    conn_guard_close(g, sh), conn_guard_close(g, sb), conn_guard_close(g, sy), conn_guard_close(g, si);
    cr_assert_eq(conn_guard_count(g), 0);
    conn_guard_free(g);
}

Test(conn_guard, newcomer_evicts_the_oldest_waiting_connection) {
    conn_limits_t lim = {.max_conn = 3, .per_client = 3, .header_timeout = 100, .body_timeout = 100, .idle_timeout = 100};
    conn_guard_t *g = conn_guard_create(&lim);
    pair_t p[5];
    int s[5];
    for (int i = 0; i < 3; i++) s[i] = open_from(g, p[i] = new_pair(), 1 + i, i);
    conn_guard_phase(g, s[0], CG_BUSY, 3);   /* the oldest is busy: not a victim */
    s[3] = open_from(g, p[3] = new_pair(), 9, 4);
    cr_assert(s[3] >= 0);
    cr_assert(!was_cut(p[0]) && was_cut(p[1]) && !was_cut(p[2]), "the oldest waiting (1) goes");
    conn_guard_phase(g, s[2], CG_BUSY, 5);
    conn_guard_phase(g, s[3], CG_BUSY, 5);
    s[4] = open_from(g, p[4] = new_pair(), 9, 6);
    cr_assert_eq(s[4], -1, "every slot busy: refused");
    cr_assert(was_cut(p[4]));
    cr_assert_eq(conn_guard_count(g), 3);
    conn_guard_free(g);
}

Test(conn_guard, per_client_cap_evicts_that_clients_own) {
    conn_limits_t lim = {.max_conn = 16, .per_client = 2, .header_timeout = 100, .body_timeout = 100, .idle_timeout = 100};
    conn_guard_t *g = conn_guard_create(&lim);
    pair_t a1 = new_pair(), a2 = new_pair(), b1 = new_pair(), a3 = new_pair(), a4 = new_pair();
    int s1 = open_from(g, a1, 1, 0), s2 = open_from(g, a2, 1, 1);
    open_from(g, b1, 2, 0.5);
    cr_assert(open_from(g, a3, 1, 2) >= 0);
    cr_assert(was_cut(a1) && !was_cut(a2) && !was_cut(b1), "client 1's oldest goes, not client 2's older one");
    conn_guard_close(g, s1);
    conn_guard_phase(g, s2, CG_BUSY, 3);
    int s4 = open_from(g, a4, 1, 4);
    cr_assert(s4 >= 0, "a3 is still only waiting: evicted");
    cr_assert(was_cut(a3));
    pair_t a5 = new_pair();
    conn_guard_phase(g, s4, CG_BUSY, 5);
    cr_assert_eq(open_from(g, a5, 1, 6), -1, "the client's connections are all busy: refused");
    conn_guard_free(g);
}
