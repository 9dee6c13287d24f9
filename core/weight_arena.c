/* weight_arena.c - see weight_arena.h. A list of chunks, bump allocation in
 * the newest one, a count of live blocks per chunk. */
#include "weight_arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

enum { CHUNK_MIN = 256u << 20, HUGE_PAGE = 2u << 20, ALIGN = 64 };

typedef struct chunk {
    uint8_t *base;
    size_t size, used;
    size_t live;           /* blocks not yet released */
    struct chunk *next;
} chunk_t;

struct weight_arena {
    chunk_t *chunks;       /* newest first */
};

weight_arena_t *weight_arena_create(void) { return calloc(1, sizeof(weight_arena_t)); }

static void chunk_unmap(chunk_t *c) {
    munmap(c->base, c->size);
    free(c);
}

void weight_arena_free(weight_arena_t *a) {
    if (!a) return;
    for (chunk_t *c = a->chunks, *n; c; c = n) {
        n = c->next;
        chunk_unmap(c);
    }
    free(a);
}

static chunk_t *chunk_new(size_t need) {
    size_t size = need > CHUNK_MIN ? (need + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE : CHUNK_MIN;
    chunk_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        free(c);
        return NULL;
    }
    madvise(p, size, MADV_HUGEPAGE);   /* advice only: fine if THP is off */
    c->base = p;
    c->size = size;
    return c;
}

void *weight_arena_alloc(weight_arena_t *a, size_t n, spex_err_t *err) {
    size_t want = (n + ALIGN - 1) / ALIGN * ALIGN;
    if (want == 0) want = ALIGN;
    chunk_t *c = a->chunks;
    if (!c || c->size - c->used < want) {
        if (!(c = chunk_new(want))) {
            spex_fail(err, "out of memory for %zu MB of weights", n >> 20);
            return NULL;
        }
        c->next = a->chunks;
        a->chunks = c;
    }
    void *p = c->base + c->used;
    c->used += want;
    c->live++;
    return p;
}

void weight_arena_release(weight_arena_t *a, void *p) {
    if (!a || !p) return;
    for (chunk_t **pc = &a->chunks; *pc; pc = &(*pc)->next) {
        chunk_t *c = *pc;
        if ((uint8_t *)p < c->base || (uint8_t *)p >= c->base + c->size) continue;
        if (--c->live == 0) {
            *pc = c->next;
            chunk_unmap(c);
        }
        return;
    }
}

size_t weight_arena_mapped(const weight_arena_t *a) {
    size_t n = 0;
    for (const chunk_t *c = a ? a->chunks : NULL; c; c = c->next) n += c->size;
    return n;
}
