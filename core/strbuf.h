/* strbuf.h - the growable byte buffer every layer builds text in: HTTP bodies,
 * JSON lines, Prometheus metrics, safetensors headers, chat prompts, streamed
 * completion text.
 *
 * A strbuf_t is a plain value: zero-initialise it ({0}), append, and release
 * it with sb_free (or take its bytes with sb_take). Appending never fails
 * loudly: on out-of-memory the buffer remembers it (sb.oom) and ignores
 * further appends, so builders can append freely and check once at the end.
 *
 * sb_json_str is the one JSON string escaper of Spex. It escapes any bytes:
 * invalid UTF-8 (which a model can generate, a token may end inside a
 * character) becomes U+FFFD, so the output is always valid JSON. */
#ifndef SPEX_STRBUF_H
#define SPEX_STRBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct strbuf {
    char *p;       /* NUL-terminated when non-NULL */
    size_t n, cap;
    bool oom;
} strbuf_t;

void sb_free(strbuf_t *b);
void sb_reset(strbuf_t *b);   /* n = 0, keeps the memory */
/* Shorten to n bytes (n <= b->n). */
void sb_truncate(strbuf_t *b, size_t n);
void sb_add(strbuf_t *b, const void *data, size_t len);
void sb_str(strbuf_t *b, const char *s);
void sb_printf(strbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Room for `extra` more bytes written in place: returns the end of the text
 * (NULL on out-of-memory); sb_commit(b, k) then appends the k <= extra bytes
 * written there. */
char *sb_reserve(strbuf_t *b, size_t extra);
void sb_commit(strbuf_t *b, size_t k);
/* A JSON string literal of data[len] (quotes included). */
void sb_json_str(strbuf_t *b, const char *data, size_t len);
/* A JSON string literal, or null when s is NULL. */
void sb_json_cstr(strbuf_t *b, const char *s);
/* [a,b,...] */
void sb_json_ids(strbuf_t *b, const int32_t *ids, int n);
/* Take ownership of the bytes (NULL on oom); the buffer is left empty. */
char *sb_take(strbuf_t *b, size_t *len);

#endif
