/* jinja_lex.c - Jinja template text -> tokens, with the whitespace rules of
 * the environment transformers renders chat templates in:
 *
 *   - "\r\n" and "\r" become "\n", and one trailing newline of the template is dropped;
 *   - {%- / {{- / {#- strip all whitespace before the tag, -%} / -}} / -#} all after it;
 *   - trim_blocks: the first newline after a block or comment tag is removed (not after +%});
 *   - lstrip_blocks: spaces and tabs from the start of a line to a block or
 *     comment tag are removed (not before {%+).
 *
 * Comments disappear here. Inside a tag, an end marker counts only outside
 * brackets, as in Jinja ({{ {'a': {'b': 1}} }}). Positions are 1-based line
 * and byte column of the original text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/serve/jinja_internal.h"
#include "core/utf8.h"

typedef struct lexer {
    const char *s;
    size_t n, i;
    size_t cur_off; int cur_line; size_t cur_line_start;   /* position cursor, moves forward only */
    jarena_t *a;
    jtoks_t *out;
    char *msg; size_t msg_len;
} lexer_t;

static void position(lexer_t *lx, size_t off, int *line, int *col) {
    if (off < lx->cur_off) { lx->cur_off = 0; lx->cur_line = 1; lx->cur_line_start = 0; }
    for (; lx->cur_off < off; lx->cur_off++)
        if (lx->s[lx->cur_off] == '\n') { lx->cur_line++; lx->cur_line_start = lx->cur_off + 1; }
    *line = lx->cur_line;
    *col = (int)(off - lx->cur_line_start) + 1;
}

static int lex_fail(lexer_t *lx, size_t off, const char *what) {
    int line, col;
    position(lx, off, &line, &col);
    snprintf(lx->msg, lx->msg_len, "%d:%d: %s", line, col, what);
    return -1;
}

static jtok_t *emit(lexer_t *lx, jtok_kind_t kind, size_t off, const char *p, size_t len) {
    jtoks_t *o = lx->out;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        jtok_t *t = realloc(o->t, cap * sizeof *t);
        if (!t) return NULL;
        o->t = t, o->cap = cap;
    }
    jtok_t *t = &o->t[o->n++];
    *t = (jtok_t){.kind = kind, .p = p, .len = len};
    position(lx, off, &t->line, &t->col);
    return t;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_name(char c) { return is_name_start(c) || is_digit(c); }

/* Text before a tag, after {%- stripping or lstrip_blocks. */
static size_t strip_text(const char *s, size_t start, size_t end, char kind, char sign, bool line_starting) {
    if (sign == '-') {
        while (end > start && is_ws(s[end - 1])) end--;
        return end;
    }
    if (sign == '+' || kind == '{') return end;
    size_t k = end;   /* lstrip_blocks: only spaces/tabs back to a newline (or a line start) */
    while (k > start && (s[k - 1] == ' ' || s[k - 1] == '\t' || s[k - 1] == '\f' || s[k - 1] == '\v')) k--;
    if (k > start ? s[k - 1] == '\n' : line_starting) return k;
    return end;
}

/* Python's unicode_escape on a string literal's body, into the arena. */
static int decode_string(lexer_t *lx, size_t off, size_t end, char q, jtok_t *t) {
    char *out = jarena_alloc(lx->a, end - off + 1);
    if (!out) return lex_fail(lx, off, "out of memory");
    size_t n = 0;
    for (size_t i = off + 1; i < end; i++) {
        char c = lx->s[i];
        if (c != '\\' || i + 1 >= end) { out[n++] = c; continue; }
        char e = lx->s[++i];
        const char *simple = strchr("nrtabfv\\'\"\n", e);
        if (e && simple) {
            static const char from[] = "nrtabfv\\'\"", to[] = "\n\r\t\a\b\f\v\\'\"";
            if (e == '\n') continue;   /* backslash-newline: nothing */
            out[n++] = to[strchr(from, e) - from];
        } else if (e == 'x' || e == 'u' || e == 'U') {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < digits; k++) {
                char h = i + 1 < end ? lx->s[++i] : 0;
                int v = is_digit(h) ? h - '0' : (h | 32) >= 'a' && (h | 32) <= 'f' ? (h | 32) - 'a' + 10 : -1;
                if (v < 0) return lex_fail(lx, i, "invalid \\x/\\u escape in string");
                cp = cp * 16 + (uint32_t)v;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return lex_fail(lx, i, "invalid code point escape");
            if (cp < 0x80) out[n++] = (char)cp;
            else if (cp < 0x800) { out[n++] = (char)(0xC0 | cp >> 6); out[n++] = (char)(0x80 | (cp & 63)); }
            else if (cp < 0x10000) {
                out[n++] = (char)(0xE0 | cp >> 12); out[n++] = (char)(0x80 | ((cp >> 6) & 63));
                out[n++] = (char)(0x80 | (cp & 63));
            } else {
                out[n++] = (char)(0xF0 | cp >> 18); out[n++] = (char)(0x80 | ((cp >> 12) & 63));
                out[n++] = (char)(0x80 | ((cp >> 6) & 63)); out[n++] = (char)(0x80 | (cp & 63));
            }
        } else {   /* unknown escapes stay as written */
            out[n++] = '\\';
            out[n++] = e;
        }
    }
    (void)q;
    t->p = out;
    t->len = n;
    return 0;
}

static int lex_string(lexer_t *lx) {
    size_t off = lx->i;
    char q = lx->s[off];
    size_t i = off + 1;
    while (i < lx->n && lx->s[i] != q) i += lx->s[i] == '\\' ? 2 : 1;
    if (i >= lx->n) return lex_fail(lx, off, "unterminated string");
    jtok_t *t = emit(lx, JT_STRING, off, NULL, 0);
    if (!t) return lex_fail(lx, off, "out of memory");
    lx->i = i + 1;
    return decode_string(lx, off, i, q, t);
}

static size_t digits_end(const char *s, size_t n, size_t i) {
    while (i < n && (is_digit(s[i]) || (s[i] == '_' && i + 1 < n && is_digit(s[i + 1])))) i++;
    return i;
}

static int lex_number(lexer_t *lx, bool after_dot) {
    size_t off = lx->i, i = digits_end(lx->s, lx->n, off);
    bool is_float = false;
    if (!after_dot && i + 1 < lx->n && lx->s[i] == '.' && is_digit(lx->s[i + 1])) {
        i = digits_end(lx->s, lx->n, i + 1);
        is_float = true;
    }
    if (!after_dot && i < lx->n && (lx->s[i] == 'e' || lx->s[i] == 'E')) {
        size_t k = i + 1;
        if (k < lx->n && (lx->s[k] == '+' || lx->s[k] == '-')) k++;
        if (k < lx->n && is_digit(lx->s[k])) { i = digits_end(lx->s, lx->n, k); is_float = true; }
    }
    char buf[128];
    size_t m = 0;
    for (size_t k = off; k < i && m + 1 < sizeof buf; k++)
        if (lx->s[k] != '_') buf[m++] = lx->s[k];
    buf[m] = '\0';
    jtok_t *t = emit(lx, is_float ? JT_FLOAT : JT_INT, off, lx->s + off, i - off);
    if (!t) return lex_fail(lx, off, "out of memory");
    if (is_float) t->fval = strtod(buf, NULL);
    else {
        char *endp;
        unsigned long long v = strtoull(buf, &endp, 10);
        if (m > 18 && v > (unsigned long long)INT64_MAX) return lex_fail(lx, off, "integer literal too large");
        t->ival = (int64_t)v;
    }
    lx->i = i;
    return 0;
}

static int lex_operator(lexer_t *lx) {
    static const char *two[] = {"//", "**", "==", "!=", "<=", ">="};
    size_t off = lx->i;
    for (size_t k = 0; k < sizeof two / sizeof *two; k++)
        if (off + 1 < lx->n && !memcmp(lx->s + off, two[k], 2)) {
            if (!emit(lx, JT_OP, off, two[k], 2)) return lex_fail(lx, off, "out of memory");
            lx->i += 2;
            return 0;
        }
    const char *one = strchr("+-*/%~()[]{},.:|=<>", lx->s[off]);
    if (!one || !lx->s[off]) {
        char what[64];
        snprintf(what, sizeof what, "unexpected character '%c' in a tag", lx->s[off]);
        return lex_fail(lx, off, what);
    }
    if (!emit(lx, JT_OP, off, one, 1)) return lex_fail(lx, off, "out of memory");
    lx->i++;
    return 0;
}

/* The end marker at lx->i ("-%}", "+%}", "%}" or "-}}", "}}"), its length, or 0. */
static size_t tag_end_at(const lexer_t *lx, char kind, char *sign) {
    const char *s = lx->s + lx->i;
    size_t left = lx->n - lx->i;
    const char *close = kind == '%' ? "%}" : "}}";
    *sign = 0;
    if (left >= 3 && (s[0] == '-' || (s[0] == '+' && kind == '%')) && !memcmp(s + 1, close, 2)) { *sign = s[0]; return 3; }
    if (left >= 2 && !memcmp(s, close, 2)) return 2;
    return 0;
}

/* Tokens of one {{ }} or {% %} tag, from lx->i (after the opener) through its end. */
static int lex_tag(lexer_t *lx, char kind, size_t open_off, bool *line_starting) {
    int depth = 0;
    for (;;) {
        while (lx->i < lx->n && is_ws(lx->s[lx->i])) lx->i++;
        if (lx->i >= lx->n) return lex_fail(lx, open_off, kind == '%' ? "unclosed block tag '{%'" : "unclosed '{{'");
        char sign;
        size_t end_len = depth == 0 ? tag_end_at(lx, kind, &sign) : 0;
        if (end_len) {
            if (!emit(lx, kind == '%' ? JT_BLOCK_END : JT_VAR_END, lx->i, NULL, 0)) return lex_fail(lx, lx->i, "out of memory");
            lx->i += end_len;
            if (sign == '-') while (lx->i < lx->n && is_ws(lx->s[lx->i])) lx->i++;
            else if (!sign && kind == '%' && lx->i < lx->n && lx->s[lx->i] == '\n') lx->i++;   /* trim_blocks */
            *line_starting = lx->i > 0 && lx->s[lx->i - 1] == '\n' && (sign == '-' || kind == '%');
            return 0;
        }
        char c = lx->s[lx->i];
        bool after_dot = lx->out->n && lx->out->t[lx->out->n - 1].kind == JT_OP && lx->out->t[lx->out->n - 1].p[0] == '.';
        if (c == '\'' || c == '"') { if (lex_string(lx)) return -1; continue; }
        if (is_digit(c)) { if (lex_number(lx, after_dot)) return -1; continue; }
        if (is_name_start(c)) {
            size_t off = lx->i;
            while (lx->i < lx->n && is_name(lx->s[lx->i])) lx->i++;
            if (!emit(lx, JT_NAME, off, lx->s + off, lx->i - off)) return lex_fail(lx, off, "out of memory");
            continue;
        }
        if (c == '(' || c == '[' || c == '{') depth++;
        if ((c == ')' || c == ']' || c == '}') && depth > 0) depth--;
        if (lex_operator(lx)) return -1;
    }
}

static int lex_comment(lexer_t *lx, size_t open_off, bool *line_starting) {
    const char *end = NULL;
    for (size_t i = lx->i; i + 1 < lx->n; i++)
        if (lx->s[i] == '#' && lx->s[i + 1] == '}') { end = lx->s + i; break; }
    if (!end) return lex_fail(lx, open_off, "unclosed comment '{#'");
    size_t at = (size_t)(end - lx->s);
    char sign = at > lx->i && (end[-1] == '-' || end[-1] == '+') ? end[-1] : 0;
    lx->i = at + 2;
    if (sign == '-') while (lx->i < lx->n && is_ws(lx->s[lx->i])) lx->i++;
    else if (!sign && lx->i < lx->n && lx->s[lx->i] == '\n') lx->i++;
    *line_starting = lx->s[lx->i - 1] == '\n';
    return 0;
}

/* The next "{{", "{%" or "{#" at or after i, or n. */
static size_t next_tag(const char *s, size_t n, size_t i) {
    for (; i + 1 < n; i++)
        if (s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#')) return i;
    return n;
}

static int lex_all(lexer_t *lx) {
    bool line_starting = true;
    while (lx->i < lx->n) {
        size_t j = next_tag(lx->s, lx->n, lx->i);
        char kind = j < lx->n ? lx->s[j + 1] : 0;
        char sign = j + 2 < lx->n && (lx->s[j + 2] == '-' || lx->s[j + 2] == '+') ? lx->s[j + 2] : 0;
        size_t text_end = j < lx->n ? strip_text(lx->s, lx->i, j, kind, sign, line_starting) : j;
        if (text_end > lx->i && !emit(lx, JT_TEXT, lx->i, lx->s + lx->i, text_end - lx->i))
            return lex_fail(lx, lx->i, "out of memory");
        if (j >= lx->n) break;
        lx->i = j + 2 + (sign ? 1 : 0);
        if (kind == '#') { if (lex_comment(lx, j, &line_starting)) return -1; continue; }
        if (!emit(lx, kind == '%' ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, j, NULL, 0)) return lex_fail(lx, j, "out of memory");
        if (lex_tag(lx, kind, j, &line_starting)) return -1;
    }
    return emit(lx, JT_EOF, lx->n, NULL, 0) ? 0 : lex_fail(lx, lx->n, "out of memory");
}

int jinja_lex(const char *src, size_t len, jarena_t *a, jtoks_t *out, char *msg, size_t msg_len) {
    char *s = jarena_alloc(a, len + 1);   /* newlines normalised */
    if (!s) { snprintf(msg, msg_len, "out of memory"); return -1; }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') { s[n++] = '\n'; if (i + 1 < len && src[i + 1] == '\n') i++; }
        else s[n++] = src[i];
    }
    if (n && s[n - 1] == '\n') n--;   /* keep_trailing_newline = False */
    *out = (jtoks_t){0};
    lexer_t lx = {.s = s, .n = n, .cur_line = 1, .a = a, .out = out, .msg = msg, .msg_len = msg_len};
    if (lex_all(&lx)) { jtoks_free(out); return -1; }
    return 0;
}

void jtoks_free(jtoks_t *t) {
    free(t->t);
    *t = (jtoks_t){0};
}
