/* strbuf.c - see strbuf.h. */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_free(strbuf_t *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

void sb_reset(strbuf_t *b) {
    b->n = 0;
    if (b->p) b->p[0] = '\0';
}

static bool sb_grow(strbuf_t *b, size_t extra) {
    if (b->oom) return false;
    if (b->n + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = true; return false; }
    b->p = p;
    b->cap = cap;
    return true;
}

void sb_add(strbuf_t *b, const void *data, size_t len) {
    if (!sb_grow(b, len)) return;
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = '\0';
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

/* Length of the valid UTF-8 sequence at s[0..avail), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t avail) {
    size_t n = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || n > avail || (n == 2 && s[0] < 0xC2) || (n == 4 && s[0] > 0xF4)) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (n == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0))) return 0;
    if (n == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))) return 0;
    return n;
}

void sb_json_str(strbuf_t *b, const char *data, size_t len) {
    const unsigned char *s = (const unsigned char *)data;
    sb_add(b, "\"", 1);
    size_t i = 0;
    while (i < len) {
        size_t run = i;   /* copy plain printable ASCII in one go */
        while (run < len && s[run] >= 0x20 && s[run] < 0x7f && s[run] != '"' && s[run] != '\\') run++;
        if (run > i) { sb_add(b, s + i, run - i); i = run; continue; }
        size_t n = utf8_len(s + i, len - i);
        if (n == 0) { sb_add(b, "\\ufffd", 6); i++; continue; }
        if (n > 1) { sb_add(b, s + i, n); i += n; continue; }
        unsigned char c = s[i++];
        if (c == '"') sb_add(b, "\\\"", 2);
        else if (c == '\\') sb_add(b, "\\\\", 2);
        else if (c == '\n') sb_add(b, "\\n", 2);
        else if (c == '\r') sb_add(b, "\\r", 2);
        else if (c == '\t') sb_add(b, "\\t", 2);
        else sb_printf(b, "\\u%04x", c);
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
