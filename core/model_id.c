/* model_id.c - see model_id.h. */
#include "model_id.h"

#include <stdio.h>
#include <stdlib.h>

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * FNV_PRIME;
    return h;
}

/* Hash the first `limit` bytes of `path` (all of it when limit == 0). */
static int hash_file(const char *path, uint64_t limit, uint64_t *h, spex_err_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return spex_fail(err, "model identity: cannot read '%s'", path);
    uint8_t buf[65536];
    uint64_t left = limit ? limit : UINT64_MAX;
    size_t k;
    while (left > 0 && (k = fread(buf, 1, left < sizeof buf ? (size_t)left : sizeof buf, f)) > 0) {
        *h = fnv1a(*h, buf, k);
        left -= k;
    }
    fclose(f);
    return 0;
}

int model_identity(const char *dir, const tensor_store_t *ts, uint64_t *id, spex_err_t *err) {
    char path[4096];
    uint64_t h = FNV_OFFSET;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (hash_file(path, 0, &h, err)) return -1;
    for (int i = 0; i < tensor_store_file_count(ts); i++) {
        const char *fp = tensor_store_file_path(ts, i);
        FILE *f = fopen(fp, "rb");
        uint8_t len8[8];
        if (!f || fread(len8, 1, 8, f) != 8) {
            if (f) fclose(f);
            return spex_fail(err, "model identity: cannot read the header of '%s'", fp);
        }
        fclose(f);
        uint64_t hl = 0;
        for (int b = 0; b < 8; b++) hl |= (uint64_t)len8[b] << (8 * b);
        if (hash_file(fp, 8 + hl, &h, err)) return -1;
    }
    *id = h;
    return 0;
}
