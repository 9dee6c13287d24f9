/* test_body_gate.c - server/body_gate.h (issue 16 item 3): however many
 * threads parse at once, at most `slots` are inside the gate; every waiter
 * gets in eventually; the count returns to 0. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "server/body_gate.h"

typedef struct shared {
    body_gate_t *g;
    atomic_int inside, max_inside, done;
} shared_t;

static void *worker(void *arg) {
    shared_t *s = arg;
    for (int i = 0; i < 50; i++) {
        body_gate_enter(s->g);
        int now = atomic_fetch_add(&s->inside, 1) + 1;
        int m = atomic_load(&s->max_inside);
        while (now > m && !atomic_compare_exchange_weak(&s->max_inside, &m, now)) {}
        struct timespec ts = {0, 100 * 1000};
        nanosleep(&ts, NULL);   /* hold the slot a little, so others queue */
        atomic_fetch_sub(&s->inside, 1);
        body_gate_leave(s->g, i % 10 ? 1024 : BODY_GATE_TRIM_BYTES);   /* a trim now and then */
    }
    atomic_fetch_add(&s->done, 1);
    return NULL;
}

Test(body_gate, at_most_slots_inside) {
    for (unsigned slots = 1; slots <= 3; slots++) {
        shared_t s = {.g = body_gate_create(slots)};
        cr_assert_not_null(s.g);
        pthread_t th[16];
        for (int i = 0; i < 16; i++) cr_assert_eq(pthread_create(&th[i], NULL, worker, &s), 0);
        for (int i = 0; i < 16; i++) pthread_join(th[i], NULL);
        cr_assert_eq(atomic_load(&s.done), 16, "every waiter got in");
        cr_assert_leq(atomic_load(&s.max_inside), (int)slots, "%d inside with %u slots", atomic_load(&s.max_inside),
                      slots);
        cr_assert_geq(atomic_load(&s.max_inside), 1);
        cr_assert_eq(body_gate_busy(s.g), 0u);
        body_gate_free(s.g);
    }
}
