/* arena.h - a grow-only scratch buffer for the forward pass.
 *
 * The engine's hot path allocates nothing per call (llama2.c's RunState idea,
 * without fixing the batch size at load): each buffer is sized by the largest
 * request seen so far and reused, so steady-state decode steps never call
 * malloc. A model owns one arena per role (model.h). */
#ifndef SPEX_ARENA_H
#define SPEX_ARENA_H

#include <stddef.h>

typedef struct arena {
    float *p;
    size_t cap;   /* floats */
} arena_t;

/* At least n floats (64-byte aligned), valid until the next call on this
 * arena; NULL when out of memory (the old buffer is then still owned). */
float *arena_floats(arena_t *a, size_t n);
void arena_free(arena_t *a);

#endif
