/* json_str.c - see json_str.h. The walk follows the text and the tree in step:
 * cJSON keeps members and elements in text order, duplicates included. */
#include "json_str.h"

#include <limits.h>
#include <string.h>

static int hex4(const char *s, size_t n, size_t i) {
    if (i + 4 > n) return -1;
    int v = 0;
    for (size_t k = i; k < i + 4; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t put_utf8(char *out, unsigned long cp) {
    unsigned char b[4];
    size_t k = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (k == 1) b[0] = (unsigned char)cp;
    else {
        for (size_t j = k - 1; j > 0; j--, cp >>= 6) b[j] = (unsigned char)(0x80 | (cp & 0x3f));
        b[0] = (unsigned char)((k == 2 ? 0xc0 : k == 3 ? 0xe0 : 0xf0) | cp);
    }
    if (out) memcpy(out, b, k);
    return k;
}

/* The \u escape at s[i] (s[i] == 'u'): code point, or -1; *used = chars after the backslash. */
static long unicode_escape(const char *s, size_t n, size_t i, size_t *used) {
    long hi = hex4(s, n, i + 1);
    *used = 5;
    if (hi < 0 || (hi >= 0xdc00 && hi <= 0xdfff)) return -1;
    if (hi < 0xd800 || hi > 0xdbff) return hi;
    if (i + 6 >= n || s[i + 5] != '\\' || s[i + 6] != 'u') return -1;
    long lo = hex4(s, n, i + 7);
    if (lo < 0xdc00 || lo > 0xdfff) return -1;
    *used = 11;
    return 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
}

static int simple_escape(char c) {
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '/': return '/';
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    default: return -1;
    }
}

size_t json_str_decode(const char *s, size_t n, char *out, size_t *out_len) {
    size_t i = 1, k = 0;
    *out_len = 0;
    if (n == 0 || s[0] != '"') return 0;
    while (i < n && s[i] != '"') {
        if (s[i] != '\\') {
            if (out) out[k] = s[i];
            k++, i++;
            continue;
        }
        if (++i >= n) return 0;
        int c = simple_escape(s[i]);
        if (c >= 0) {
            if (out) out[k] = (char)c;
            k++, i++;
            continue;
        }
        size_t used;
        long cp = s[i] == 'u' ? unicode_escape(s, n, i, &used) : -1;
        if (cp < 0) return 0;
        k += put_utf8(out ? out + k : NULL, (unsigned long)cp);
        i += used;
    }
    if (i >= n) return 0;
    *out_len = k;
    return i + 1;
}

/* ---------------------------------------------------------------- the walk */

typedef struct walk {
    const char *s;
    size_t n, i;
    const char *why;
} walk_t;

static void skip_ws(walk_t *w) {
    while (w->i < w->n && (w->s[w->i] == ' ' || w->s[w->i] == '\t' || w->s[w->i] == '\n' || w->s[w->i] == '\r')) w->i++;
}

static int fail_walk(walk_t *w, const char *why) {
    w->why = why;
    return -1;
}

/* The string token at w->i: its decoded length, checked against cJSON's bytes. */
static int string_token(walk_t *w, const char *cjson_bytes, size_t *len) {
    size_t tok = json_str_decode(w->s + w->i, w->n - w->i, NULL, len);
    if (!tok || !cjson_bytes || *len > INT_MAX || cjson_bytes[*len] != '\0')
        return fail_walk(w, "a string does not decode as cJSON read it");
    w->i += tok;
    return 0;
}

static int walk_value(walk_t *w, cJSON *node);

/* Members or elements up to `close`; object members have a name first. */
static int walk_children(walk_t *w, cJSON *node, char close, bool object) {
    w->i++;
    skip_ws(w);
    cJSON *child = node->child;
    if (w->i < w->n && w->s[w->i] == close) return child ? fail_walk(w, "tree and text differ") : (w->i++, 0);
    for (;; child = child->next) {
        if (!child) return fail_walk(w, "tree and text differ");
        if (object) {
            size_t klen;
            if (string_token(w, child->string, &klen)) return -1;
            if (klen != strlen(child->string)) return fail_walk(w, "not valid here: a member name holds a NUL character");
            skip_ws(w);
            w->i++;   /* ':' */
            skip_ws(w);
        }
        if (walk_value(w, child)) return -1;
        skip_ws(w);
        if (w->i >= w->n) return fail_walk(w, "tree and text differ");
        if (w->s[w->i++] == close) return child->next ? fail_walk(w, "tree and text differ") : 0;
        skip_ws(w);
    }
}

static int walk_value(walk_t *w, cJSON *node) {
    if (cJSON_IsObject(node)) return walk_children(w, node, '}', true);
    if (cJSON_IsArray(node)) return walk_children(w, node, ']', false);
    if (cJSON_IsString(node)) {
        size_t len;
        if (string_token(w, node->valuestring, &len)) return -1;
        node->valueint = (int)len;
        return 0;
    }
    while (w->i < w->n && !strchr(",]} \t\r\n", w->s[w->i])) w->i++;   /* number or literal */
    return 0;
}

cJSON *json_parse_doc(const char *text, size_t len, const char **why, size_t *at) {
    const char *end = text;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        *why = "not valid JSON";
        *at = end ? (size_t)(end - text) : 0;
        return NULL;
    }
    walk_t w = {.s = text, .n = len};
    skip_ws(&w);
    if (walk_value(&w, root) == 0) {
        skip_ws(&w);
        if (w.i == len) return root;
        w.why = "not one JSON value: characters follow it";
    }
    *why = w.why;
    *at = w.i;
    cJSON_Delete(root);
    return NULL;
}

/* A tree parsed otherwise (valueint 0 on a non-empty string) falls back to strlen. */
size_t json_str_len(const cJSON *s) {
    if (!s || !s->valuestring) return 0;
    return s->valueint > 0 ? (size_t)s->valueint : strlen(s->valuestring);
}

bool json_str_is(const cJSON *s, const char *want) {
    return cJSON_IsString(s) && json_str_len(s) == strlen(want) && !memcmp(s->valuestring, want, json_str_len(s));
}

void json_str_spell(strbuf_t *b, const char *data, size_t len) {
    sb_add(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\b' ? "\\b" : c == '\f' ? "\\f"
                        : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
        if (esc) sb_str(b, esc);
        else if (c < 0x20) sb_printf(b, "\\u%04x", c);
        else sb_add(b, &data[i], 1);
    }
    sb_add(b, "\"", 1);
}
