/* safetensors_write.c - see safetensors_write.h: build a .safetensors header
 * (sorted by name, `__metadata__` first, padded with spaces to a multiple of 8
 * so the data section starts 8-byte aligned) and write the data either from
 * copies held in memory or streamed by the caller tensor by tensor. */
#include "safetensors_write.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/strbuf.h"

#define STW_MAX_DIMS 8

typedef struct stw_entry {
    char *name;
    spex_dtype_t dtype;
    int ndim;
    int64_t shape[STW_MAX_DIMS];
    uint64_t nbytes, offset;   /* offset within the data section */
    void *data;                /* copy, or NULL when only declared */
} stw_entry_t;

struct st_writer {
    stw_entry_t *e;
    size_t n, cap;
    uint64_t total;            /* data bytes so far */
    /* streaming state */
    int fd;                    /* -1 when no file is open */
    char *path, *tmp;
    size_t cur;                /* entry being streamed */
    uint64_t cur_done;         /* bytes of it written */
};

st_writer_t *st_writer_create(void) {
    st_writer_t *w = calloc(1, sizeof *w);
    if (w) w->fd = -1;
    return w;
}

static void abandon_file(st_writer_t *w) {
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp);
    }
    w->fd = -1;
    free(w->path);
    free(w->tmp);
    w->path = w->tmp = NULL;
}

void st_writer_free(st_writer_t *w) {
    if (!w) return;
    abandon_file(w);
    for (size_t i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].data);
    }
    free(w->e);
    free(w);
}

uint64_t st_writer_data_bytes(const st_writer_t *w) { return w->total; }

/* Append an entry (without data); offset = current end of the data section. */
static stw_entry_t *push_entry(st_writer_t *w, const char *name, spex_dtype_t dtype, int ndim,
                               const int64_t *shape, spex_err_t *err) {
    if (w->fd >= 0) { spex_fail(err, "tensor '%s': cannot add after st_writer_begin", name); return NULL; }
    if ((unsigned)dtype >= DTYPE_COUNT) { spex_fail(err, "tensor '%s': bad dtype", name); return NULL; }
    if (ndim < 0 || ndim > STW_MAX_DIMS) { spex_fail(err, "tensor '%s': %d dims", name, ndim); return NULL; }
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->e[i].name, name)) { spex_fail(err, "tensor '%s' added twice", name); return NULL; }
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) { spex_fail(err, "tensor '%s': negative dim %d", name, i); return NULL; }
        numel *= (uint64_t)shape[i];
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        stw_entry_t *ne = realloc(w->e, cap * sizeof *ne);
        if (!ne) { spex_fail(err, "out of memory"); return NULL; }
        w->e = ne;
        w->cap = cap;
    }
    stw_entry_t *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = malloc(strlen(name) + 1);
    if (!e->name) { spex_fail(err, "out of memory"); return NULL; }
    strcpy(e->name, name);
    e->dtype = dtype;
    e->ndim = ndim;
    if (ndim) memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
    e->nbytes = numel * dtype_size(dtype);
    e->offset = w->total;
    w->total += e->nbytes;
    w->n++;
    return e;
}

int st_writer_declare(st_writer_t *w, const char *name, spex_dtype_t dtype, int ndim, const int64_t *shape,
                      spex_err_t *err) {
    return push_entry(w, name, dtype, ndim, shape, err) ? 0 : -1;
}

int st_writer_add(st_writer_t *w, const char *name, spex_dtype_t dtype, int ndim, const int64_t *shape,
                  const void *data, size_t nbytes, spex_err_t *err) {
    stw_entry_t *e = push_entry(w, name, dtype, ndim, shape, err);
    if (!e) return -1;
    int rc = 0;
    if (e->nbytes != nbytes)
        rc = spex_fail(err, "tensor '%s': %zu bytes given, shape and dtype need %llu", name, nbytes,
                       (unsigned long long)e->nbytes);
    else if (!(e->data = malloc(nbytes ? nbytes : 1)))
        rc = spex_fail(err, "tensor '%s': out of memory", name);
    if (rc) {   /* undo the push */
        free(e->name);
        w->total -= e->nbytes;
        w->n--;
        return -1;
    }
    memcpy(e->data, data, nbytes);
    return 0;
}

/* ---------------------------------------------------------------- header */

static int entry_name_cmp(const void *a, const void *b) {
    return strcmp((*(const stw_entry_t *const *)a)->name, (*(const stw_entry_t *const *)b)->name);
}

static void header_entry(strbuf_t *b, const stw_entry_t *e) {
    sb_str(b, ",");
    sb_json_cstr(b, e->name);
    sb_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", dtype_name(e->dtype));
    for (int d = 0; d < e->ndim; d++) sb_printf(b, "%s%lld", d ? "," : "", (long long)e->shape[d]);
    sb_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)e->offset,
              (unsigned long long)(e->offset + e->nbytes));
}

/* The header bytes: u64 length + JSON padded with spaces to a multiple of 8. */
static int build_header(const st_writer_t *w, strbuf_t *b, spex_err_t *err) {
    const stw_entry_t **order = malloc((w->n + 1) * sizeof *order);
    if (!order) return spex_fail(err, "out of memory");
    for (size_t i = 0; i < w->n; i++) order[i] = &w->e[i];
    qsort(order, w->n, sizeof *order, entry_name_cmp);
    sb_add(b, "\0\0\0\0\0\0\0\0", 8);
    sb_str(b, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < w->n; i++) header_entry(b, order[i]);
    sb_str(b, "}");
    free(order);
    while (!b->oom && b->n % 8) sb_str(b, " ");
    if (b->oom) return spex_fail(err, "out of memory building header");
    uint64_t n = b->n - 8;
    for (int i = 0; i < 8; i++) b->p[i] = (char)((n >> (8 * i)) & 0xff);
    return 0;
}

/* ---------------------------------------------------------------- file output */

static int write_all(st_writer_t *w, const void *data, size_t n, spex_err_t *err) {
    const char *p = data;
    while (n > 0) {
        ssize_t k = write(w->fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return spex_fail(err, "%s: write failed: %s", w->tmp, strerror(errno));
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int st_writer_begin(st_writer_t *w, const char *path, spex_err_t *err) {
    if (w->fd >= 0) return spex_fail(err, "%s: st_writer_begin called twice", path);
    size_t len = strlen(path);
    w->path = malloc(len + 1);
    w->tmp = malloc(len + 16);
    if (!w->path || !w->tmp) { abandon_file(w); return spex_fail(err, "out of memory"); }
    memcpy(w->path, path, len + 1);
    snprintf(w->tmp, len + 16, "%s.tmp.XXXXXX", path);
    w->fd = mkstemp(w->tmp);
    if (w->fd < 0) {
        int e = errno;
        abandon_file(w);
        return spex_fail(err, "%s: cannot create temp file: %s", path, strerror(e));
    }
    fchmod(w->fd, 0644);   /* mkstemp makes 0600; checkpoints are meant to be shared */
    strbuf_t b = {0};
    int rc = build_header(w, &b, err) || write_all(w, b.p, b.n, err);
    sb_free(&b);
    w->cur = 0;
    w->cur_done = 0;
    if (rc) abandon_file(w);
    return rc ? -1 : 0;
}

int st_writer_put(st_writer_t *w, const void *data, size_t nbytes, spex_err_t *err) {
    if (w->fd < 0) return spex_fail(err, "st_writer_put without st_writer_begin");
    const char *p = data;
    while (nbytes > 0) {
        while (w->cur < w->n && w->cur_done == w->e[w->cur].nbytes) { w->cur++; w->cur_done = 0; }
        if (w->cur >= w->n) return spex_fail(err, "%s: more data than the declared tensors hold", w->path);
        uint64_t room = w->e[w->cur].nbytes - w->cur_done;
        size_t k = nbytes < room ? nbytes : (size_t)room;
        if (write_all(w, p, k, err)) return spex_err_prefix(err, "tensor '%s': ", w->e[w->cur].name);
        w->cur_done += k;
        p += k;
        nbytes -= k;
    }
    return 0;
}

int st_writer_finish(st_writer_t *w, spex_err_t *err) {
    if (w->fd < 0) return spex_fail(err, "st_writer_finish without st_writer_begin");
    while (w->cur < w->n && w->cur_done == w->e[w->cur].nbytes) { w->cur++; w->cur_done = 0; }
    if (w->cur < w->n) {
        spex_fail(err, "%s: tensor '%s': only %llu of %llu bytes written", w->path, w->e[w->cur].name,
                  (unsigned long long)w->cur_done, (unsigned long long)w->e[w->cur].nbytes);
        abandon_file(w);
        return -1;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0 || rename(w->tmp, w->path) != 0) {
        int e = errno;
        unlink(w->tmp);
        spex_fail(err, "%s: cannot finish file: %s", w->path, strerror(e));
        abandon_file(w);
        return -1;
    }
    abandon_file(w);   /* fd already closed: just frees the names */
    return 0;
}

int st_writer_write(st_writer_t *w, const char *path, spex_err_t *err) {
    for (size_t i = 0; i < w->n; i++)
        if (!w->e[i].data && w->e[i].nbytes)
            return spex_fail(err, "%s: tensor '%s' was declared without data; use st_writer_put", path, w->e[i].name);
    if (st_writer_begin(w, path, err)) return -1;
    for (size_t i = 0; i < w->n; i++)
        if (w->e[i].nbytes && st_writer_put(w, w->e[i].data, w->e[i].nbytes, err)) {
            abandon_file(w);
            return -1;
        }
    return st_writer_finish(w, err);
}
