/* test_weight_arena.c - the packed huge-page arena for copied weights
 * (core/weight_arena.h): blocks are 64-byte aligned and do not overlap, small
 * tensors share a chunk instead of taking 2 MB each, a chunk is unmapped when
 * its last block is released, and a block larger than a chunk gets its own. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "core/weight_arena.h"

Test(weight_arena, packs_aligns_and_returns_memory) {
    spex_err_t err = {0};
    weight_arena_t *a = weight_arena_create();
    cr_assert_not_null(a);
    enum { N = 100 };
    uint8_t *p[N];
    for (int i = 0; i < N; i++) {   /* 100 tensors of ~3 MB: one 2 MB-rounded block each would map 400 MB */
        p[i] = weight_arena_alloc(a, (3u << 20) - 1000u + (unsigned)i, &err);
        cr_assert_not_null(p[i], "%s", err.msg);
        cr_assert_eq((uintptr_t)p[i] % 64, 0, "block %d not 64-byte aligned", i);
        memset(p[i], i, (3u << 20) - 1000u + (unsigned)i);
    }
    for (int i = 0; i < N; i++) cr_assert_eq(p[i][0], (uint8_t)i, "block %d overwritten", i);
    size_t mapped = weight_arena_mapped(a);
    cr_assert_leq(mapped, (size_t)N * (3u << 20) + (256u << 20), "mapped %zu MB for 300 MB of tensors", mapped >> 20);
    uint8_t *big = weight_arena_alloc(a, 300u << 20, &err);   /* larger than a chunk */
    cr_assert_not_null(big, "%s", err.msg);
    big[(300u << 20) - 1] = 7;
    weight_arena_release(a, big);
    cr_assert_eq(weight_arena_mapped(a), mapped, "the big block's chunk was not unmapped");
    for (int i = 0; i < N; i++) weight_arena_release(a, p[i]);
    cr_assert_eq(weight_arena_mapped(a), 0, "%zu bytes still mapped after releasing everything", weight_arena_mapped(a));
    weight_arena_release(a, NULL);
    weight_arena_free(a);
}
