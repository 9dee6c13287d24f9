/* conn_guard.c - see conn_guard.h. A fixed table of slots under one mutex; an
 * evicted or expired connection keeps its slot (marked) until libmicrohttpd
 * reports it closed, so its fd is never shut down twice or after reuse. */
#include "conn_guard.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct slot {
    bool used;               /* a connection holds it until conn_guard_close */
    bool cut;                /* shut down by us (evicted or expired): not counted */
    int fd;
    conn_phase_t phase;
    double since;            /* start of the current phase */
    unsigned char addr[16];  /* client address (IPv4 or IPv6 bytes), port excluded */
    size_t addr_len;
} slot_t;

struct conn_guard {
    pthread_mutex_t mu;
    conn_limits_t lim;
    slot_t *slots;
    size_t n_slots;          /* max_conn + room for connections being closed */
};

conn_guard_t *conn_guard_create(const conn_limits_t *lim) {
    conn_guard_t *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->lim = *lim;
    g->n_slots = (size_t)lim->max_conn * 2 + 16;
    if (!(g->slots = calloc(g->n_slots, sizeof *g->slots))) {
        free(g);
        return NULL;
    }
    pthread_mutex_init(&g->mu, NULL);
    return g;
}

void conn_guard_free(conn_guard_t *g) {
    if (!g) return;
    pthread_mutex_destroy(&g->mu);
    free(g->slots);
    free(g);
}

/* The address bytes without the port: the client's identity. */
static size_t addr_key(const struct sockaddr *a, socklen_t len, unsigned char out[16]) {
    if (a && a->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        memcpy(out, &((const struct sockaddr_in *)a)->sin_addr, 4);
        return 4;
    }
    if (a && a->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        memcpy(out, &((const struct sockaddr_in6 *)a)->sin6_addr, 16);
        return 16;
    }
    return 0;
}

static bool live(const slot_t *s) { return s->used && !s->cut; }

static bool same_client(const slot_t *s, const unsigned char *key, size_t len) {
    return s->addr_len == len && !memcmp(s->addr, key, len);
}

static void cut(slot_t *s) {
    shutdown(s->fd, SHUT_RDWR);
    s->cut = true;
}

/* Oldest live connection without a request in progress (of one client if key), or NULL. */
static slot_t *oldest_waiting(conn_guard_t *g, const unsigned char *key, size_t len) {
    slot_t *best = NULL;
    for (size_t i = 0; i < g->n_slots; i++) {
        slot_t *s = &g->slots[i];
        if (!live(s) || (s->phase != CG_HEADERS && s->phase != CG_IDLE) || (key && !same_client(s, key, len)))
            continue;
        if (!best || s->since < best->since) best = s;
    }
    return best;
}

/* Make room for one more connection (of this client): false if impossible. */
static bool make_room(conn_guard_t *g, const unsigned char *key, size_t len) {
    unsigned all = 0, mine = 0;
    for (size_t i = 0; i < g->n_slots; i++)
        if (live(&g->slots[i])) all++, mine += same_client(&g->slots[i], key, len);
    slot_t *victim = NULL;
    if (g->lim.per_client && mine >= g->lim.per_client && !(victim = oldest_waiting(g, key, len))) return false;
    if (victim) cut(victim), all--;
    if (all >= g->lim.max_conn) {
        if (!(victim = oldest_waiting(g, NULL, 0))) return false;
        cut(victim);
    }
    return true;
}

int conn_guard_open(conn_guard_t *g, int fd, const struct sockaddr *addr, socklen_t addr_len, double now) {
    unsigned char key[16];
    size_t len = addr_key(addr, addr_len, key);
    int slot = -1;
    pthread_mutex_lock(&g->mu);
    if (make_room(g, key, len))
        for (size_t i = 0; i < g->n_slots && slot < 0; i++)
            if (!g->slots[i].used) slot = (int)i;
    if (slot >= 0) {
        slot_t *s = &g->slots[slot];
        *s = (slot_t){.used = true, .fd = fd, .phase = CG_HEADERS, .since = now, .addr_len = len};
        memcpy(s->addr, key, len);
    } else {
        shutdown(fd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&g->mu);
    return slot;
}

void conn_guard_phase(conn_guard_t *g, int slot, conn_phase_t phase, double now) {
    if (slot < 0 || (size_t)slot >= g->n_slots) return;
    pthread_mutex_lock(&g->mu);
    g->slots[slot].phase = phase;
    g->slots[slot].since = now;
    pthread_mutex_unlock(&g->mu);
}

void conn_guard_close(conn_guard_t *g, int slot) {
    if (slot < 0 || (size_t)slot >= g->n_slots) return;
    pthread_mutex_lock(&g->mu);
    g->slots[slot] = (slot_t){0};
    pthread_mutex_unlock(&g->mu);
}

static double deadline_of(const conn_limits_t *l, const slot_t *s) {
    switch (s->phase) {
    case CG_HEADERS: return s->since + l->header_timeout;
    case CG_BODY: return s->since + l->body_timeout;
    case CG_IDLE: return s->since + l->idle_timeout;
    default: return 1e300;
    }
}

int conn_guard_sweep(conn_guard_t *g, double now) {
    int n = 0;
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->n_slots; i++)
        if (live(&g->slots[i]) && now >= deadline_of(&g->lim, &g->slots[i])) cut(&g->slots[i]), n++;
    pthread_mutex_unlock(&g->mu);
    return n;
}

unsigned conn_guard_count(conn_guard_t *g) {
    unsigned n = 0;
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->n_slots; i++) n += live(&g->slots[i]);
    pthread_mutex_unlock(&g->mu);
    return n;
}
