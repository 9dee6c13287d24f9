/* strbuf.c - see strbuf.h. */
#include "core/strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"

void sb_free(strbuf_t *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

void sb_truncate(strbuf_t *b, size_t n) {
    if (n > b->n) return;
    b->n = n;
    if (b->p) b->p[n] = '\0';
}

void sb_reset(strbuf_t *b) { sb_truncate(b, 0); }

static bool sb_grow(strbuf_t *b, size_t extra) {
    if (b->oom) return false;
    if (extra > SIZE_MAX / 2 - b->n) { b->oom = true; return false; }   /* cap would overflow */
    if (b->n + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = true; return false; }
    b->p = p;
    b->cap = cap;
    return true;
}

char *sb_reserve(strbuf_t *b, size_t extra) { return sb_grow(b, extra) ? b->p + b->n : NULL; }

void sb_commit(strbuf_t *b, size_t k) {
    if (b->oom || !b->p || b->n + k >= b->cap) return;
    b->n += k;
    b->p[b->n] = '\0';
}

void sb_add(strbuf_t *b, const void *data, size_t len) {
    if (!sb_grow(b, len)) return;
    memcpy(b->p + b->n, data, len);
    sb_commit(b, len);
}

void sb_str(strbuf_t *b, const char *s) { sb_add(b, s, strlen(s)); }

void sb_printf(strbuf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0 || !sb_grow(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

/* The escape of one ASCII byte that cannot appear as is in a JSON string. */
static void sb_json_escape_byte(strbuf_t *b, unsigned char c) {
    if (c == '"') sb_add(b, "\\\"", 2);
    else if (c == '\\') sb_add(b, "\\\\", 2);
    else if (c == '\n') sb_add(b, "\\n", 2);
    else if (c == '\r') sb_add(b, "\\r", 2);
    else if (c == '\t') sb_add(b, "\\t", 2);
    else sb_printf(b, "\\u%04x", c);
}

static bool json_plain(unsigned char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; }

void sb_json_str(strbuf_t *b, const char *data, size_t len) {
    const unsigned char *s = (const unsigned char *)data;
    sb_add(b, "\"", 1);
    size_t i = 0;
    while (i < len) {
        size_t run = i;   /* copy plain printable ASCII in one go */
        while (run < len && json_plain(s[run])) run++;
        if (run > i) { sb_add(b, s + i, run - i); i = run; continue; }
        size_t n = utf8_valid_len(s + i, len - i);
        if (n == 0) {   /* not UTF-8: one byte becomes U+FFFD */
            sb_add(b, "\\ufffd", 6);
            n = 1;
        } else if (n > 1) {
            sb_add(b, s + i, n);
        } else {
            sb_json_escape_byte(b, s[i]);
        }
        i += n;
    }
    sb_add(b, "\"", 1);
}

void sb_json_cstr(strbuf_t *b, const char *s) {
    if (s) sb_json_str(b, s, strlen(s));
    else sb_add(b, "null", 4);
}

void sb_json_ids(strbuf_t *b, const int32_t *ids, int n) {
    sb_add(b, "[", 1);
    for (int i = 0; i < n; i++) sb_printf(b, i ? ",%d" : "%d", (int)ids[i]);
    sb_add(b, "]", 1);
}

char *sb_take(strbuf_t *b, size_t *len) {
    char *p = b->oom ? NULL : b->p;
    if (!p) {
        if (!b->oom && (p = malloc(1))) p[0] = '\0';
        else free(b->p);
    }
    if (len) *len = p ? b->n : 0;
    memset(b, 0, sizeof *b);
    return p;
}
