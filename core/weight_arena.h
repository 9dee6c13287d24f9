/* weight_arena.h - anonymous memory for copied weights, packed in huge-page chunks.
 *
 * With `--weights copy` every tensor a process uses is read into anonymous
 * memory, because transparent huge pages make the kernels' weight streams
 * faster than the 4 KB page-cache mapping (docs/performance.md). Giving each
 * tensor its own 2 MB-aligned block would waste up to 2 MB per tensor (a
 * 2.9 MB expert matrix would occupy 4 MB: +38% RSS on a 16 B model), so
 * tensors are packed 64-byte aligned into chunks of >= 256 MB mapped with
 * MADV_HUGEPAGE. A chunk is unmapped when every tensor in it is released (a
 * worker that changes its expert set gets its memory back). */
#ifndef SPEX_WEIGHT_ARENA_H
#define SPEX_WEIGHT_ARENA_H

#include <stddef.h>

#include "core/error.h"

typedef struct weight_arena weight_arena_t;

weight_arena_t *weight_arena_create(void);
/* Unmaps every chunk; pointers handed out become invalid. */
void weight_arena_free(weight_arena_t *a);

/* n bytes, 64-byte aligned; NULL with a message when out of memory. */
void *weight_arena_alloc(weight_arena_t *a, size_t n, spex_err_t *err);
/* Give back a block from weight_arena_alloc (NULL is ignored). */
void weight_arena_release(weight_arena_t *a, void *p);

/* Bytes currently mapped (for tests and statistics). */
size_t weight_arena_mapped(const weight_arena_t *a);

#endif
