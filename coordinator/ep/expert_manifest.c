/* expert_manifest.c - see expert_manifest.h. File layout (host byte order; a
 * file from another architecture fails its key and is rebuilt):
 *   "SPEXDIG1" | u64 model_id | u32 layers | u32 experts | u32 files |
 *   files x {u64 size, i64 mtime s, i64 mtime ns} | layers*experts x u64 digest |
 *   u64 XXH3 of everything before */
#include "expert_manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/clock.h"
#include "core/log.h"
#include "transport/expert_digest.h"

static const char MAGIC[8] = {'S', 'P', 'E', 'X', 'D', 'I', 'G', '1'};

typedef struct key {           /* what the cached digests must match */
    uint64_t model_id;
    uint32_t layers, experts, files;
    int64_t *stat;             /* [files * 3]: size, mtime s, mtime ns */
} manifest_key_t;

static int key_build(manifest_key_t *k, const spex_config_t *cfg, const tensor_store_t *ts, uint64_t model_id,
                     spex_err_t *err) {
    k->model_id = model_id;
    k->layers = (uint32_t)(cfg->num_hidden_layers + cfg->num_nextn_predict_layers);
    k->experts = (uint32_t)cfg->n_routed_experts;
    k->files = (uint32_t)tensor_store_file_count(ts);
    if (!(k->stat = calloc((size_t)k->files * 3 + 1, sizeof *k->stat))) return spex_fail(err, "out of memory");
    for (uint32_t f = 0; f < k->files; f++) {
        struct stat sb;
        const char *path = tensor_store_file_path(ts, (int)f);
        if (stat(path, &sb)) return spex_fail(err, "expert digests: cannot stat '%s'", path);
        k->stat[f * 3] = (int64_t)sb.st_size;
        k->stat[f * 3 + 1] = (int64_t)sb.st_mtim.tv_sec;
        k->stat[f * 3 + 2] = (int64_t)sb.st_mtim.tv_nsec;
    }
    return 0;
}

static size_t header_bytes(const manifest_key_t *k) { return 8 + 8 + 12 + (size_t)k->files * 24; }

static size_t file_bytes(const manifest_key_t *k) {
    return header_bytes(k) + (size_t)k->layers * k->experts * 8 + 8;
}

/* The file's image for key k and digests d, malloc'ed (file_bytes(k) long). */
static uint8_t *serialize(const manifest_key_t *k, const uint64_t *d) {
    uint8_t *buf = malloc(file_bytes(k)), *p = buf;
    if (!buf) return NULL;
    uint32_t dims[3] = {k->layers, k->experts, k->files};
    memcpy(p, MAGIC, 8), p += 8;
    memcpy(p, &k->model_id, 8), p += 8;
    memcpy(p, dims, 12), p += 12;
    memcpy(p, k->stat, (size_t)k->files * 24), p += (size_t)k->files * 24;
    memcpy(p, d, (size_t)k->layers * k->experts * 8), p += (size_t)k->layers * k->experts * 8;
    uint64_t sum = XXH3_64bits(buf, (size_t)(p - buf));
    memcpy(p, &sum, 8);
    return buf;
}

/* 0: out[] filled from a file that matches k; -1: absent, stale or damaged. */
static int read_cached(const char *path, const manifest_key_t *k, uint64_t *out) {
    size_t want = file_bytes(k), got = 0;
    uint8_t *buf = malloc(want + 1), *img = NULL;
    FILE *f = fopen(path, "rb");
    if (f && buf) got = fread(buf, 1, want + 1, f);
    if (f) fclose(f);
    int rc = -1;
    if (buf && got == want) {
        memcpy(out, buf + header_bytes(k), (size_t)k->layers * k->experts * 8);
        img = serialize(k, out);   /* same key and digests => the same bytes, checksum included */
        rc = img && !memcmp(img, buf, want) ? 0 : -1;
    }
    free(img);
    free(buf);
    return rc;
}

/* Write the file through a temporary name; false if the directory refuses. */
static bool write_cached(const char *path, const manifest_key_t *k, const uint64_t *d) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    uint8_t *img = serialize(k, d);
    FILE *f = img ? fopen(tmp, "wb") : NULL;
    bool ok = f && fwrite(img, 1, file_bytes(k), f) == file_bytes(k);
    if (f) ok = (fclose(f) == 0) && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok && f) unlink(tmp);
    free(img);
    return ok;
}

uint64_t *expert_manifest_get(const char *dir, const spex_config_t *cfg, const tensor_store_t *ts, uint64_t model_id,
                              expert_manifest_info_t *info, spex_err_t *err) {
    manifest_key_t k = {0};
    char path[4096];
    double t0 = spex_now();
    *info = (expert_manifest_info_t){0};
    snprintf(path, sizeof path, "%s/%s", dir, EXPERT_MANIFEST_NAME);
    uint64_t *d = key_build(&k, cfg, ts, model_id, err) ? NULL : malloc(sizeof *d * ((size_t)k.layers * k.experts + 1));
    if (d && read_cached(path, &k, d) == 0) {
        info->cached = true;
    } else if (d && expert_digest_all(cfg, ts, d, &info->bytes, err) == 0) {
        info->written = write_cached(path, &k, d);
        if (!info->written) spex_log("expert digests: cannot write '%s'; they will be computed at every start", path);
    } else {
        if (k.stat && !d) spex_fail(err, "out of memory");
        free(d);
        d = NULL;
    }
    info->seconds = spex_now() - t0;
    free(k.stat);
    return d;
}
