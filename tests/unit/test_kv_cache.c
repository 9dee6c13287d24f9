/* test_kv_cache.c - the latent KV cache's bookkeeping (coordinator/model/kv_cache.h):
 * create (every layer empty, storage for `capacity` tokens, which the test
 * writes end to end so the sanitizer build catches a short allocation),
 * truncate (only lowers lengths, clamps at 0, confined to the layer range and
 * to existing layers), reset, bytes per token, and invalid sizes -> NULL with a
 * message. No floating point is computed here, so every check is exact. */
#include <criterion/criterion.h>
#include <string.h>

#include "coordinator/model/kv_cache.h"

static void set_lens(kv_cache_t *kv, const int *lens) {
    for (int l = 0; l < kv->n_layers; l++) kv->len[l] = lens[l];
}

static void expect_lens(const kv_cache_t *kv, const int *want, const char *what) {
    for (int l = 0; l < kv->n_layers; l++)
        cr_assert_eq(kv->len[l], want[l], "%s: layer %d len %d, want %d", what, l, kv->len[l], want[l]);
}

Test(kv_cache, create_shapes_and_storage) {
    spex_err_t err = {0};
    kv_cache_t *kv = kv_cache_create(5, 64, 16, 37, &err);
    cr_assert_not_null(kv, "%s", err.msg);
    cr_assert(kv->n_layers == 5 && kv->kv_lora == 64 && kv->rope == 16 && kv->width == 80 && kv->capacity == 37);
    for (int l = 0; l < 5; l++) {
        cr_assert_eq(kv->len[l], 0);
        cr_assert_not_null(kv->rows[l]);
        /* the whole [capacity, width] range is writable and layers do not overlap */
        for (int i = 0; i < 37 * 80; i++) kv->rows[l][i] = (float)(l * 100000 + i);
    }
    for (int l = 0; l < 5; l++) {
        cr_assert_eq(kv->rows[l][37 * 80 - 1], (float)(l * 100000 + 37 * 80 - 1));
        cr_assert_eq(kv->rows[l][0], (float)(l * 100000));
    }
    cr_assert_eq(kv_cache_bytes_per_token(kv), sizeof(float) * 5 * (64 + 16));
    kv_cache_free(kv);
    /* DeepSeek-V3's per-token size: 61 + 1 layers x (512 + 64) floats */
    kv = kv_cache_create(62, 512, 64, 1, &err);
    cr_assert_not_null(kv, "%s", err.msg);
    cr_assert_eq(kv_cache_bytes_per_token(kv), (size_t)4 * 62 * 576);
    kv_cache_free(kv);
    /* rope 0 is allowed (no rope key) */
    kv = kv_cache_create(1, 8, 0, 4, &err);
    cr_assert_not_null(kv, "%s", err.msg);
    cr_assert_eq(kv_cache_bytes_per_token(kv), sizeof(float) * 8);
    kv_cache_free(kv);
    kv_cache_free(NULL);
}

Test(kv_cache, bad_sizes_are_errors) {
    struct { int layers, lora, rope, cap; } bad[] = {
        {0, 64, 16, 8}, {-1, 64, 16, 8}, {2, 0, 16, 8}, {2, -64, 16, 8}, {2, 64, -1, 8}, {2, 64, 16, 0}, {2, 64, 16, -5},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        spex_err_t err = {0};
        kv_cache_t *kv = kv_cache_create(bad[i].layers, bad[i].lora, bad[i].rope, bad[i].cap, &err);
        cr_assert_null(kv, "case %zu (%d, %d, %d, %d) accepted", i, bad[i].layers, bad[i].lora, bad[i].rope, bad[i].cap);
        cr_assert(strstr(err.msg, "kv cache") != NULL, "case %zu: message '%s'", i, err.msg);
        kv_cache_free(kv);
    }
}

Test(kv_cache, truncate_semantics) {
    spex_err_t err = {0};
    kv_cache_t *kv = kv_cache_create(4, 8, 4, 20, &err);
    cr_assert_not_null(kv, "%s", err.msg);
    int start[4] = {10, 7, 3, 12};
    set_lens(kv, start);
    /* lowers only: 5 cuts layers 0, 1 (10, 7 -> 5), leaves layer 2 (3) alone */
    kv_cache_truncate(kv, 0, 3, 5);
    expect_lens(kv, (int[]){5, 5, 3, 12}, "truncate [0,3) to 5");
    /* never raises */
    kv_cache_truncate(kv, 0, 4, 15);
    expect_lens(kv, (int[]){5, 5, 3, 12}, "truncate to 15");
    /* confined to [first, first+count): MTP layer only */
    kv_cache_truncate(kv, 3, 1, 9);
    expect_lens(kv, (int[]){5, 5, 3, 9}, "truncate [3,4) to 9");
    /* negative length clamps to 0 */
    kv_cache_truncate(kv, 1, 2, -3);
    expect_lens(kv, (int[]){5, 0, 0, 9}, "truncate [1,3) to -3");
    /* ranges past the last layer are clipped, count 0 is a no-op */
    kv_cache_truncate(kv, 2, 100, 4);
    expect_lens(kv, (int[]){5, 0, 0, 4}, "truncate [2,102) to 4");
    kv_cache_truncate(kv, 0, 0, 0);
    expect_lens(kv, (int[]){5, 0, 0, 4}, "truncate count 0");
    kv_cache_truncate(kv, 4, 3, 0);
    expect_lens(kv, (int[]){5, 0, 0, 4}, "truncate beyond the layers");
    /* truncating to the current length is a no-op */
    kv_cache_truncate(kv, 0, 4, 5);
    expect_lens(kv, (int[]){5, 0, 0, 4}, "truncate to current");
    kv_cache_free(kv);
}

Test(kv_cache, truncate_keeps_data_below_the_cut) {
    spex_err_t err = {0};
    kv_cache_t *kv = kv_cache_create(2, 4, 2, 10, &err);
    cr_assert_not_null(kv, "%s", err.msg);
    for (int i = 0; i < 10 * 6; i++) kv->rows[0][i] = (float)i;
    kv->len[0] = 10;
    kv_cache_truncate(kv, 0, 1, 6);
    cr_assert_eq(kv->len[0], 6);
    for (int i = 0; i < 6 * 6; i++) cr_assert_eq(kv->rows[0][i], (float)i);
    kv_cache_free(kv);
}

Test(kv_cache, reset_semantics) {
    spex_err_t err = {0};
    kv_cache_t *kv = kv_cache_create(5, 8, 4, 20, &err);
    cr_assert_not_null(kv, "%s", err.msg);
    int start[5] = {10, 7, 3, 12, 1};
    set_lens(kv, start);
    kv_cache_reset(kv, 1, 2);
    expect_lens(kv, (int[]){10, 0, 0, 12, 1}, "reset [1,3)");
    kv_cache_reset(kv, 4, 10);
    expect_lens(kv, (int[]){10, 0, 0, 12, 0}, "reset [4,14) clipped");
    kv_cache_reset(kv, 0, 0);
    expect_lens(kv, (int[]){10, 0, 0, 12, 0}, "reset count 0");
    kv_cache_reset(kv, 0, 5);
    expect_lens(kv, (int[]){0, 0, 0, 0, 0}, "reset all");
    kv_cache_free(kv);
}
