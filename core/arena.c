/* arena.c - see arena.h. */
#include "arena.h"

#include <stdlib.h>

float *arena_floats(arena_t *a, size_t n) {
    if (a->p && n <= a->cap) return a->p;
    size_t want = n + n / 4 + 16;          /* headroom: batches grow a row at a time */
    void *q = NULL;
    if (posix_memalign(&q, 64, want * sizeof(float))) return NULL;
    free(a->p);
    a->p = q;
    a->cap = want;
    return a->p;
}

void arena_free(arena_t *a) {
    free(a->p);
    a->p = NULL;
    a->cap = 0;
}
