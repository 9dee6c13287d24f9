/* jinja_arena.c - the bump allocator behind every Jinja value and AST node
 * (jinja_internal.h). Allocations come from 64 KiB chunks (larger ones get a
 * chunk of their own) and are released all at once; the byte budget is how a
 * render's memory is bounded. */
#include <stdlib.h>
#include <string.h>

#include "coordinator/serve/jinja_internal.h"

#define CHUNK_BYTES (64u << 10)

struct jarena_chunk {
    jarena_chunk_t *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void jarena_init(jarena_t *a, size_t limit) { *a = (jarena_t){.limit = limit}; }

static jarena_chunk_t *new_chunk(jarena_t *a, size_t cap) {
    size_t bytes = sizeof(jarena_chunk_t) + cap;
    if (a->used + bytes > a->limit) { a->exhausted = true; return NULL; }
    jarena_chunk_t *c = malloc(bytes);
    if (!c) { a->exhausted = true; return NULL; }
    c->used = 0;
    c->cap = cap;
    a->used += bytes;
    return c;
}

void *jarena_alloc(jarena_t *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    jarena_chunk_t *c = a->head;
    if (!c || c->cap - c->used < n) {
        if (n > CHUNK_BYTES / 4) {   /* big: its own chunk, behind the current one */
            jarena_chunk_t *big = new_chunk(a, n);
            if (!big) return NULL;
            big->used = n;
            if (c) { big->next = c->next; c->next = big; } else { big->next = NULL; a->head = big; }
            memset(big->data, 0, n);
            return big->data;
        }
        if (!(c = new_chunk(a, CHUNK_BYTES))) return NULL;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void jarena_free(jarena_t *a) {
    for (jarena_chunk_t *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
    a->used = 0;
}
