/* safetensors.c - see safetensors.h: open a checkpoint (one file, an index of
 * shards, or every *.safetensors in a directory), mmap each file read-only,
 * validate every header entry up front, and load tensors by name as f32.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON
 *   {"__metadata__": {...}, "<name>": {"dtype": "BF16", "shape": [r, c], "data_offsets": [b, e]}, ...}
 * then the data section; offsets are relative to its start (byte 8 + N). */
#include "safetensors.h"
#include "weight_arena.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"

#define ST_HEADER_MAX (100u << 20)   /* the reference implementation's limit */
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact in a double */

typedef struct st_file {
    char *path;
    const uint8_t *map;    /* whole file, PROT_READ */
    size_t size;
    size_t data_start;     /* 8 + header length */
} st_file_t;

struct tensor_store {
    char *origin;          /* directory or file path, for "missing tensor" errors */
    st_file_t *files;
    int nfiles;
    st_tensor_t *tensors;  /* sorted by name once every file is parsed */
    size_t count, cap;
    int fp8_block[2];
    tensor_residency_t residency;
    weight_arena_t *copies;   /* --weights copy: where copied tensors live (a separate object, so a const store can hand out copies) */
};

/* ---------------------------------------------------------------- helpers */

static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    bool slash = a > 0 && dir[a - 1] == '/';
    char *p = malloc(a + b + 2);
    if (p) snprintf(p, a + b + 2, "%s%s%s", dir, slash ? "" : "/", name);
    return p;
}

const char *st_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
    return buf;
}

/* Non-negative integral JSON number below 2^53. */
static bool json_uint(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0) || d >= ST_MAX_EXACT || d != floor(d)) return false;
    *out = (int64_t)d;
    return true;
}

/* ---------------------------------------------------------------- one file */

static int file_map(st_file_t *f, const char *path, spex_err_t *err) {
    memset(f, 0, sizeof *f);
    f->path = str_dup(path);
    if (!f->path) return spex_fail(err, "%s: out of memory", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return spex_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return spex_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (st.st_size < 8) {
        close(fd);
        return spex_fail(err, "%s: file is %lld bytes, shorter than the 8-byte header length", path,
                         (long long)st.st_size);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return spex_fail(err, "%s: mmap failed: %s", path, strerror(errno));
    f->map = m;
    f->size = (size_t)st.st_size;
    return 0;
}

static void file_unmap(st_file_t *f) {
    if (f->map) munmap((void *)f->map, f->size);
    free(f->path);
}

static int store_push(tensor_store_t *ts, const st_tensor_t *t, spex_err_t *err) {
    if (ts->count == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 256;
        st_tensor_t *nt = realloc(ts->tensors, cap * sizeof *nt);
        if (!nt) return spex_fail(err, "out of memory");
        ts->tensors = nt;
        ts->cap = cap;
    }
    ts->tensors[ts->count++] = *t;
    return 0;
}

/* dtype + shape of one header entry -> t (numel, nbytes). */
static int entry_type(const cJSON *e, const char *path, st_tensor_t *t, spex_err_t *err) {
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsString(dt)) return spex_fail(err, "%s: tensor '%s': missing or non-string 'dtype'", path, t->name);
    if (dtype_parse(dt->valuestring, &t->dtype))
        return spex_fail(err, "%s: tensor '%s': unknown dtype '%.32s'", path, t->name, dt->valuestring);
    if (!cJSON_IsArray(sh)) return spex_fail(err, "%s: tensor '%s': missing or non-array 'shape'", path, t->name);
    t->ndim = cJSON_GetArraySize(sh);
    if (t->ndim > ST_MAX_DIMS)
        return spex_fail(err, "%s: tensor '%s': %d dims (max %d)", path, t->name, t->ndim, ST_MAX_DIMS);
    double numel = 1;
    t->numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (!json_uint(cJSON_GetArrayItem(sh, i), &t->shape[i]))
            return spex_fail(err, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, t->name, i);
        numel *= (double)t->shape[i];   /* checked in double before the exact product can overflow */
        if (numel * (double)dtype_size(t->dtype) >= ST_MAX_EXACT)
            return spex_fail(err, "%s: tensor '%s': shape too large", path, t->name);
        t->numel *= t->shape[i];
    }
    t->nbytes = (size_t)t->numel * dtype_size(t->dtype);
    return 0;
}

/* data_offsets of one entry, checked against the data section and the byte size. */
static int entry_offsets(const cJSON *e, const st_file_t *f, int64_t off[2], st_tensor_t *t, spex_err_t *err) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    const char *path = f->path;
    if (!cJSON_IsArray(o) || cJSON_GetArraySize(o) != 2 || !json_uint(cJSON_GetArrayItem(o, 0), &off[0]) ||
        !json_uint(cJSON_GetArrayItem(o, 1), &off[1]))
        return spex_fail(err, "%s: tensor '%s': 'data_offsets' must be 2 non-negative integers", path, t->name);
    size_t data_len = f->size - f->data_start;
    if (off[1] < off[0])
        return spex_fail(err, "%s: tensor '%s': data_offsets [%lld, %lld] end before begin", path, t->name,
                         (long long)off[0], (long long)off[1]);
    if ((uint64_t)off[1] > data_len)
        return spex_fail(err, "%s: tensor '%s': data_offsets [%lld, %lld] out of range (data section is %zu bytes)",
                         path, t->name, (long long)off[0], (long long)off[1], data_len);
    if ((uint64_t)(off[1] - off[0]) != t->nbytes) {
        char sb[160];
        return spex_fail(err, "%s: tensor '%s': data_offsets span %lld bytes but %s %s needs %zu", path, t->name,
                         (long long)(off[1] - off[0]), dtype_name(t->dtype),
                         st_shape_str(sb, sizeof sb, t->ndim, t->shape), t->nbytes);
    }
    t->data = f->map + f->data_start + off[0];
    return 0;
}

typedef struct { int64_t begin, end; const char *name; } span_t;

static int span_cmp(const void *a, const void *b) {
    const span_t *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Sort one file's byte ranges and reject any two that share a byte. */
static int check_overlaps(span_t *sp, size_t n, const char *path, spex_err_t *err) {
    qsort(sp, n, sizeof *sp, span_cmp);
    const span_t *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        if (sp[i].end == sp[i].begin) continue;   /* empty tensors occupy nothing */
        if (prev && sp[i].begin < prev->end && !strcmp(sp[i].name, prev->name))
            return spex_fail(err, "%s: tensor '%s' appears twice in the header", path, sp[i].name);
        if (prev && sp[i].begin < prev->end)
            return spex_fail(err, "%s: tensor '%s': data_offsets [%lld, %lld] overlap tensor '%s' [%lld, %lld]", path,
                             sp[i].name, (long long)sp[i].begin, (long long)sp[i].end, prev->name,
                             (long long)prev->begin, (long long)prev->end);
        prev = &sp[i];
    }
    return 0;
}

/* Parse one header entry into a tensor appended to the store. */
static int parse_entry(tensor_store_t *ts, int fi, const cJSON *e, span_t *span, spex_err_t *err) {
    const st_file_t *f = &ts->files[fi];
    st_tensor_t t = {0};
    t.file = fi;
    t.name = e->string;   /* temporary: for messages until the copy below */
    if (!cJSON_IsObject(e)) return spex_fail(err, "%s: tensor '%s': entry is not an object", f->path, e->string);
    int64_t off[2] = {0, 0};
    if (entry_type(e, f->path, &t, err) || entry_offsets(e, f, off, &t, err)) return -1;
    char *name = str_dup(e->string);
    if (!name) return spex_fail(err, "out of memory");
    t.name = name;
    if (store_push(ts, &t, err)) { free(name); return -1; }
    *span = (span_t){off[0], off[1], name};
    return 0;
}

static int parse_entries(tensor_store_t *ts, int fi, const cJSON *root, spex_err_t *err) {
    int n = cJSON_GetArraySize(root);
    span_t *spans = malloc(((size_t)n + 1) * sizeof *spans);
    if (!spans) return spex_fail(err, "out of memory");
    size_t ns = 0;
    int rc = 0;
    for (const cJSON *e = root->child; e && !rc; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        rc = parse_entry(ts, fi, e, &spans[ns], err);
        if (!rc) ns++;
    }
    if (!rc) rc = check_overlaps(spans, ns, ts->files[fi].path, err);
    free(spans);
    return rc;
}

/* Header of file fi: length, JSON, entries. */
static int parse_header(tensor_store_t *ts, int fi, spex_err_t *err) {
    st_file_t *f = &ts->files[fi];
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->map[i];
    if (n > f->size - 8)
        return spex_fail(err, "%s: header length %llu past end of file (%zu bytes)", f->path, (unsigned long long)n,
                         f->size);
    if (n > ST_HEADER_MAX)
        return spex_fail(err, "%s: header length %llu is absurd (limit %u)", f->path, (unsigned long long)n,
                         ST_HEADER_MAX);
    f->data_start = 8 + (size_t)n;
    const char *text = (const char *)f->map + 8, *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    if (!root) {
        size_t pos = end && end >= text ? (size_t)(end - text) : 0;
        return spex_fail(err, "%s: header is not valid JSON (error at byte %zu of %llu)", f->path, pos,
                         (unsigned long long)n);
    }
    int rc = cJSON_IsObject(root) ? parse_entries(ts, fi, root, err)
                                  : spex_fail(err, "%s: header is not a JSON object", f->path);
    cJSON_Delete(root);
    return rc;
}

/* ---------------------------------------------------------------- store */

static tensor_store_t *store_new(const char *origin, const int fp8_block[2]) {
    tensor_store_t *ts = calloc(1, sizeof *ts);
    if (!ts) return NULL;
    ts->origin = str_dup(origin);
    ts->copies = weight_arena_create();
    if (!ts->origin || !ts->copies) {
        free(ts->origin);
        weight_arena_free(ts->copies);
        free(ts);
        return NULL;
    }
    bool given = fp8_block && fp8_block[0] > 0 && fp8_block[1] > 0;
    ts->fp8_block[0] = given ? fp8_block[0] : 128;
    ts->fp8_block[1] = given ? fp8_block[1] : 128;
    return ts;
}

void tensor_store_free(tensor_store_t *ts) {
    if (!ts) return;
    for (size_t i = 0; i < ts->count; i++) free((char *)ts->tensors[i].name);
    free(ts->tensors);
    for (int i = 0; i < ts->nfiles; i++) file_unmap(&ts->files[i]);
    free(ts->files);
    free(ts->origin);
    weight_arena_free(ts->copies);
    free(ts);
}

/* Map and parse every file in `paths`. */
static int store_add_files(tensor_store_t *ts, char **paths, int n, spex_err_t *err) {
    ts->files = calloc((size_t)n, sizeof *ts->files);
    if (!ts->files) return spex_fail(err, "out of memory");
    for (int i = 0; i < n; i++) {
        ts->nfiles = i + 1;
        if (file_map(&ts->files[i], paths[i], err) || parse_header(ts, i, err)) return -1;
    }
    return 0;
}

static int tensor_cmp(const void *a, const void *b) {
    return strcmp(((const st_tensor_t *)a)->name, ((const st_tensor_t *)b)->name);
}

/* Sort by name; the same name twice (one file or two shards) is an error. */
static int store_index(tensor_store_t *ts, spex_err_t *err) {
    if (ts->count > 1) qsort(ts->tensors, ts->count, sizeof *ts->tensors, tensor_cmp);   /* NULL when none: UB */
    for (size_t i = 1; i < ts->count; i++) {
        const st_tensor_t *a = &ts->tensors[i - 1], *b = &ts->tensors[i];
        if (!strcmp(a->name, b->name))
            return spex_fail(err, "%s: tensor '%s' appears twice (in %s and %s)", ts->origin, a->name,
                             ts->files[a->file].path, ts->files[b->file].path);
    }
    return 0;
}

tensor_store_t *tensor_store_open_file(const char *path, const int fp8_block[2], spex_err_t *err) {
    tensor_store_t *ts = store_new(path, fp8_block);
    if (!ts) { spex_fail(err, "%s: out of memory", path); return NULL; }
    char *paths[1] = {(char *)path};
    if (store_add_files(ts, paths, 1, err) || store_index(ts, err)) {
        tensor_store_free(ts);
        return NULL;
    }
    return ts;
}

/* ---------------------------------------------------------------- directory layouts */

typedef struct { char **v; int n, cap; } strlist_t;

static void strlist_free(strlist_t *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
}

static int strlist_push(strlist_t *l, char *s) {   /* takes ownership */
    if (!s) return -1;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        char **nv = realloc(l->v, (size_t)cap * sizeof *nv);
        if (!nv) { free(s); return -1; }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return 0;
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int strlist_find(const strlist_t *l, const char *s) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], s)) return i;
    return -1;
}

/* A shard file name from the index must stay inside the model directory. */
static bool safe_file_name(const char *s) {
    return s[0] && s[0] != '/' && !strstr(s, "..");
}

/* Distinct file names of index.json's weight_map, sorted. */
static int index_files(const cJSON *wm, const char *ipath, strlist_t *names, spex_err_t *err) {
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !safe_file_name(e->valuestring))
            return spex_fail(err, "%s: weight_map entry for tensor '%s' is not a plain file name", ipath, e->string);
        if (strlist_find(names, e->valuestring) < 0 && strlist_push(names, str_dup(e->valuestring)))
            return spex_fail(err, "out of memory");
    }
    if (names->n == 0) return spex_fail(err, "%s: weight_map is empty", ipath);
    qsort(names->v, (size_t)names->n, sizeof *names->v, str_cmp);
    return 0;
}

/* Every tensor the index lists must be in the file it names. */
static int index_verify(const tensor_store_t *ts, const cJSON *wm, const char *ipath, spex_err_t *err) {
    for (const cJSON *e = wm->child; e; e = e->next) {
        const st_tensor_t *t = tensor_store_find(ts, e->string);
        if (!t)
            return spex_fail(err, "%s: tensor '%s' is listed for %s but missing from that file", ipath, e->string,
                             e->valuestring);
        const char *fp = ts->files[t->file].path;
        size_t fl = strlen(fp), nl = strlen(e->valuestring);
        if (fl < nl || strcmp(fp + fl - nl, e->valuestring) || (fl > nl && fp[fl - nl - 1] != '/'))
            return spex_fail(err, "%s: tensor '%s' is listed for %s but found in %s", ipath, e->string,
                             e->valuestring, fp);
    }
    return 0;
}

static int open_index(tensor_store_t *ts, const char *dir, const char *ipath, spex_err_t *err) {
    char *text = spex_read_file(ipath, 256u << 20, NULL, err);
    if (!text) return spex_err_prefix(err, "%s: ", ipath);
    cJSON *root = cJSON_Parse(text);
    free(text);
    strlist_t names = {0}, paths = {0};
    int rc = -1;
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!root) spex_fail(err, "%s: not valid JSON", ipath);
    else if (!cJSON_IsObject(wm)) spex_fail(err, "%s: missing object 'weight_map'", ipath);
    else if (!index_files(wm, ipath, &names, err)) {
        rc = 0;
        for (int i = 0; i < names.n && !rc; i++)
            if (strlist_push(&paths, path_join(dir, names.v[i]))) rc = spex_fail(err, "out of memory");
        if (!rc) rc = store_add_files(ts, paths.v, paths.n, err);
        if (!rc) rc = store_index(ts, err);
        if (!rc) rc = index_verify(ts, wm, ipath, err);
    }
    strlist_free(&names);
    strlist_free(&paths);
    cJSON_Delete(root);
    return rc;
}

/* Every *.safetensors in dir, sorted by name. */
static int glob_shards(const char *dir, strlist_t *paths, spex_err_t *err) {
    DIR *d = opendir(dir);
    if (!d) return spex_fail(err, "%s: cannot open model directory: %s", dir, strerror(errno));
    strlist_t names = {0};
    struct dirent *de;
    int rc = 0;
    while (!rc && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n > 12 && !strcmp(de->d_name + n - 12, ".safetensors") && de->d_name[0] != '.')
            if (strlist_push(&names, str_dup(de->d_name))) rc = spex_fail(err, "out of memory");
    }
    closedir(d);
    if (!rc && names.n == 0)
        rc = spex_fail(err, "%s: no model.safetensors.index.json, model.safetensors or *.safetensors", dir);
    if (!rc) qsort(names.v, (size_t)names.n, sizeof *names.v, str_cmp);
    for (int i = 0; i < names.n && !rc; i++)
        if (strlist_push(paths, path_join(dir, names.v[i]))) rc = spex_fail(err, "out of memory");
    strlist_free(&names);
    return rc;
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

tensor_store_t *tensor_store_open(const char *dir, const int fp8_block[2], spex_err_t *err) {
    if (is_file(dir)) return tensor_store_open_file(dir, fp8_block, err);
    tensor_store_t *ts = store_new(dir, fp8_block);
    if (!ts) { spex_fail(err, "%s: out of memory", dir); return NULL; }
    char *ipath = path_join(dir, "model.safetensors.index.json");
    char *single = path_join(dir, "model.safetensors");
    strlist_t paths = {0};
    int rc;
    if (!ipath || !single) rc = spex_fail(err, "out of memory");
    else if (is_file(ipath)) rc = open_index(ts, dir, ipath, err);
    else if (is_file(single)) rc = store_add_files(ts, &single, 1, err) || store_index(ts, err);
    else rc = glob_shards(dir, &paths, err) || store_add_files(ts, paths.v, paths.n, err) || store_index(ts, err);
    free(ipath);
    free(single);
    strlist_free(&paths);
    if (rc) { tensor_store_free(ts); return NULL; }
    return ts;
}

/* ---------------------------------------------------------------- queries */

const st_tensor_t *tensor_store_find(const tensor_store_t *ts, const char *name) {
    size_t lo = 0, hi = ts->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ts->tensors[mid].name, name);
        if (c == 0) return &ts->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

size_t tensor_store_count(const tensor_store_t *ts) { return ts->count; }

const st_tensor_t *tensor_store_at(const tensor_store_t *ts, size_t i) {
    return i < ts->count ? &ts->tensors[i] : NULL;
}

const char *tensor_store_file_path(const tensor_store_t *ts, int file) {
    return file >= 0 && file < ts->nfiles ? ts->files[file].path : "?";
}

int tensor_store_file_count(const tensor_store_t *ts) { return ts->nfiles; }

uint64_t tensor_store_file_size(const tensor_store_t *ts, int file) {
    return file >= 0 && file < ts->nfiles ? ts->files[file].size : 0;
}

const char *tensor_store_origin(const tensor_store_t *ts) { return ts->origin; }

void tensor_store_set_residency(tensor_store_t *ts, tensor_residency_t r) { ts->residency = r; }

tensor_residency_t tensor_store_residency(const tensor_store_t *ts) { return ts->residency; }

void tensor_store_release_mapped(const tensor_store_t *ts) {
    for (int i = 0; i < ts->nfiles; i++)
        if (ts->files[i].map) madvise((void *)ts->files[i].map, ts->files[i].size, MADV_DONTNEED);
}

void tensor_store_fp8_block(const tensor_store_t *ts, int block[2]) {
    block[0] = ts->fp8_block[0];
    block[1] = ts->fp8_block[1];
}

/* ---------------------------------------------------------------- loading */

void *tensor_store_copy(const tensor_store_t *ts, const st_tensor_t *t, spex_err_t *err) {
    void *p = weight_arena_alloc(ts->copies, t->nbytes, err);
    if (p && tensor_store_read(ts, t, p, err)) {
        weight_arena_release(ts->copies, p);
        return NULL;
    }
    return p;
}

weight_arena_t *tensor_store_arena(const tensor_store_t *ts) { return ts->copies; }

int tensor_store_read(const tensor_store_t *ts, const st_tensor_t *t, void *dst, spex_err_t *err) {
    const st_file_t *f = &ts->files[t->file];
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return spex_fail(err, "%s: cannot open: %s", f->path, strerror(errno));
    off_t off = (off_t)(t->data - f->map);
    size_t done = 0;
    while (done < t->nbytes) {
        ssize_t r = pread(fd, (uint8_t *)dst + done, t->nbytes - done, off + (off_t)done);
        if (r <= 0) {
            close(fd);
            return spex_fail(err, "%s: reading tensor '%s': %s", f->path, t->name, r < 0 ? strerror(errno) : "end of file");
        }
        done += (size_t)r;
    }
    close(fd);
    return 0;
}

int tensor_store_check_shape(const tensor_store_t *ts, const st_tensor_t *t, int ndim, const int64_t *shape,
                             spex_err_t *err) {
    if (!shape) return 0;
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return 0;
    char a[160], b[160];
    return spex_fail(err, "tensor '%s' in %s has shape %s, expected %s", t->name, ts->files[t->file].path,
                     st_shape_str(a, sizeof a, t->ndim, t->shape), st_shape_str(b, sizeof b, ndim, shape));
}

/* The F32 block scales of FP8 tensor t: [ceil(rows/B0), ceil(cols/B1)] floats, malloc'ed. */
float *tensor_store_fp8_scales(const tensor_store_t *ts, const st_tensor_t *t, spex_err_t *err) {
    const char *fpath = ts->files[t->file].path;
    char sname[512];
    if ((size_t)snprintf(sname, sizeof sname, "%s_scale_inv", t->name) >= sizeof sname) {
        spex_fail(err, "%s: tensor '%s': name too long", fpath, t->name);
        return NULL;
    }
    const st_tensor_t *s = tensor_store_find(ts, sname);
    if (!s) {
        spex_fail(err, "%s: tensor '%s' is F8_E4M3 but its scale tensor '%s' is missing", fpath, t->name, sname);
        return NULL;
    }
    int64_t want[2] = {(t->shape[0] + ts->fp8_block[0] - 1) / ts->fp8_block[0],
                       (t->shape[1] + ts->fp8_block[1] - 1) / ts->fp8_block[1]};
    if (tensor_store_check_shape(ts, s, 2, want, err)) {
        spex_err_prefix(err, "scale of '%s' (blocks of %dx%d): ", t->name, ts->fp8_block[0], ts->fp8_block[1]);
        return NULL;
    }
    float *sc = malloc((size_t)(want[0] * want[1]) * sizeof *sc + 1);
    if (!sc) { spex_fail(err, "out of memory"); return NULL; }
    if (dtype_to_f32(s->dtype, s->data, sc, (size_t)s->numel)) {
        spex_fail(err, "tensor '%s' in %s has dtype %s, expected a float type", sname,
                  ts->files[s->file].path, dtype_name(s->dtype));
        free(sc);
        return NULL;
    }
    return sc;
}

/* dst[r][c] = e4m3(w[r][c]) * scale[r / B0][c / B1]. */
static int dequant_fp8(const tensor_store_t *ts, const st_tensor_t *t, float *dst, spex_err_t *err) {
    if (t->ndim != 2)
        return spex_fail(err, "%s: tensor '%s' is F8_E4M3 with %d dims; block scales need exactly 2",
                         ts->files[t->file].path, t->name, t->ndim);
    float *sc = tensor_store_fp8_scales(ts, t, err);
    if (!sc) return -1;
    size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1];
    size_t b0 = (size_t)ts->fp8_block[0], b1 = (size_t)ts->fp8_block[1], sc_cols = (cols + b1 - 1) / b1;
    float lut[256];
    for (int i = 0; i < 256; i++) lut[i] = e4m3_to_f32((uint8_t)i);
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *src = t->data + r * cols;
        const float *srow = sc + (r / b0) * sc_cols;
        float *d = dst + r * cols;
        for (size_t c = 0; c < cols; c++) d[c] = lut[src[c]] * srow[c / b1];
    }
    free(sc);
    return 0;
}

int tensor_store_load_f32(const tensor_store_t *ts, const char *name, int ndim, const int64_t *shape, float *dst,
                          spex_err_t *err) {
    const st_tensor_t *t = tensor_store_find(ts, name);
    if (!t) return spex_fail(err, "%s: missing tensor '%s'", ts->origin, name);
    if (tensor_store_check_shape(ts, t, ndim, shape, err)) return -1;
    if (t->dtype == DTYPE_F8_E4M3) return dequant_fp8(ts, t, dst, err);
    if (dtype_to_f32(t->dtype, t->data, dst, (size_t)t->numel))
        return spex_fail(err, "tensor '%s' in %s has dtype %s, which cannot be loaded as f32", name,
                         ts->files[t->file].path, dtype_name(t->dtype));
    return 0;
}

float *tensor_store_load_f32_alloc(const tensor_store_t *ts, const char *name, int ndim, const int64_t *shape,
                                   spex_err_t *err) {
    const st_tensor_t *t = tensor_store_find(ts, name);
    if (!t) {
        spex_fail(err, "%s: missing tensor '%s'", ts->origin, name);
        return NULL;
    }
    float *dst = malloc((size_t)t->numel * sizeof *dst + 1);
    if (!dst) {
        spex_fail(err, "%s: out of memory for tensor '%s' (%lld floats)", ts->origin, name, (long long)t->numel);
        return NULL;
    }
    if (tensor_store_load_f32(ts, name, ndim, shape, dst, err)) {
        free(dst);
        return NULL;
    }
    return dst;
}
