/* body_gate.c - see body_gate.h. A mutex and a condition variable rather than
 * a POSIX semaphore, so the count in use can be read back. */
#include "body_gate.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

struct body_gate {
    pthread_mutex_t mu;
    pthread_cond_t freed;
    unsigned slots, busy;
};

body_gate_t *body_gate_create(unsigned slots) {
    body_gate_t *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->freed, NULL);
    g->slots = slots ? slots : 1;
    return g;
}

void body_gate_free(body_gate_t *g) {
    if (!g) return;
    pthread_cond_destroy(&g->freed);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void body_gate_enter(body_gate_t *g) {
    pthread_mutex_lock(&g->mu);
    while (g->busy >= g->slots) pthread_cond_wait(&g->freed, &g->mu);
    g->busy++;
    pthread_mutex_unlock(&g->mu);
}

void body_gate_leave(body_gate_t *g, size_t bytes) {
    pthread_mutex_lock(&g->mu);
    g->busy--;
    pthread_cond_signal(&g->freed);
    pthread_mutex_unlock(&g->mu);
    body_gate_released(bytes);
}

void body_gate_released(size_t bytes) {
    if (bytes >= BODY_GATE_TRIM_BYTES) malloc_trim(0);
}

unsigned body_gate_busy(body_gate_t *g) {
    pthread_mutex_lock(&g->mu);
    unsigned n = g->busy;
    pthread_mutex_unlock(&g->mu);
    return n;
}
