/* file.c - see file.h. */
#include "core/file.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/strbuf.h"

/* Append f's bytes to b until EOF: 0, -1 on a read error, 1 past max bytes. */
static int read_all(FILE *f, size_t max, strbuf_t *b) {
    for (;;) {
        char *tail = sb_reserve(b, 65536);
        if (!tail) return 0;   /* b->oom tells */
        size_t k = fread(tail, 1, 65536, f);
        sb_commit(b, k);
        if (b->n > max) return 1;
        if (k < 65536) return ferror(f) ? -1 : 0;
    }
}

char *spex_read_file(const char *path, size_t max, size_t *len, spex_err_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        spex_fail(err, "cannot open: %s", strerror(errno));
        return NULL;
    }
    strbuf_t b = {0};
    int rc = read_all(f, max, &b);
    int e = errno;
    fclose(f);
    if (rc < 0) spex_fail(err, "read error: %s", strerror(e));
    else if (rc > 0 && max >= (1u << 20)) spex_fail(err, "larger than %zu MB", max >> 20);
    else if (rc > 0) spex_fail(err, "larger than %zu bytes", max);
    else if (b.oom) spex_fail(err, "out of memory");
    if (rc || b.oom) {
        sb_free(&b);
        return NULL;
    }
    return sb_take(&b, len);
}
