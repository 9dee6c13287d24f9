/* jinja_value.c - the Jinja value type (jinja_internal.h) with Python's
 * semantics where output depends on them: truthiness, ==, <, str() (what
 * {{ v }} prints: None, True, ['a', 1]) and repr(), float repr, and strings
 * indexed by code point. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/serve/jinja_internal.h"
#include "core/utf8.h"

const jstr_t *jstr_new(jarena_t *a, const char *p, size_t len) {
    jstr_t *s = jarena_alloc(a, sizeof *s + len + 1);
    if (!s) return NULL;
    s->len = len;
    if (len) memcpy(s->p, p, len);
    s->p[len] = '\0';
    return s;
}

jlist_t *jlist_new(jarena_t *a, size_t n) {
    jlist_t *l = jarena_alloc(a, sizeof *l + n * sizeof(jv_t));
    if (l) l->n = n;
    return l;
}

jdict_t *jdict_new(jarena_t *a, size_t cap) {
    jdict_t *d = jarena_alloc(a, sizeof *d);
    if (!d) return NULL;
    if (cap < 4) cap = 4;
    d->keys = jarena_alloc(a, cap * sizeof *d->keys);
    d->vals = jarena_alloc(a, cap * sizeof *d->vals);
    if (!d->keys || !d->vals) return NULL;
    d->cap = cap;
    return d;
}

const jv_t *jdict_get(const jdict_t *d, const char *key, size_t len) {
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i]->len == len && !memcmp(d->keys[i]->p, key, len)) return &d->vals[i];
    return NULL;
}

jlist_t *jdict_items(jarena_t *a, const jdict_t *d) {
    jlist_t *l = jlist_new(a, d->n);
    for (size_t i = 0; l && i < d->n; i++) {
        jlist_t *pair = jlist_new(a, 2);
        if (!pair) return NULL;
        pair->tuple = true;
        pair->it[0] = jv_strv(d->keys[i]);
        pair->it[1] = d->vals[i];
        l->it[i] = jv_listv(pair);
    }
    return l;
}

int jdict_set(jarena_t *a, jdict_t *d, const jstr_t *key, jv_t v) {
    jv_t *old = (jv_t *)jdict_get(d, key->p, key->len);
    if (old) { *old = v; return 0; }
    if (d->n == d->cap) {   /* grow: the old arrays stay in the arena */
        size_t cap = d->cap * 2;
        const jstr_t **keys = jarena_alloc(a, cap * sizeof *keys);
        jv_t *vals = jarena_alloc(a, cap * sizeof *vals);
        if (!keys || !vals) return -1;
        memcpy(keys, d->keys, d->n * sizeof *keys);
        memcpy(vals, d->vals, d->n * sizeof *vals);
        d->keys = keys, d->vals = vals, d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n++] = v;
    return 0;
}

/* ------------------------------------------------------------------ UTF-8 */

static size_t unit_len(const char *p, size_t len, size_t at) {
    size_t n = utf8_valid_len((const unsigned char *)p + at, len - at);
    return n ? n : 1;   /* an invalid byte counts as one unit */
}

size_t ju_next(const char *p, size_t len, size_t at) { return at + unit_len(p, len, at); }

size_t ju_count(const char *p, size_t len) {
    size_t n = 0;
    for (size_t at = 0; at < len; at = ju_next(p, len, at)) n++;
    return n;
}

size_t ju_offset(const char *p, size_t len, size_t cp) {
    size_t at = 0;
    while (cp-- && at < len) at = ju_next(p, len, at);
    return at;
}

size_t ju_prev(const char *p, size_t at) {
    size_t k = at - 1;   /* back over continuation bytes, at most 3 */
    while (k > 0 && at - k < 4 && ((unsigned char)p[k] & 0xC0) == 0x80) k--;
    size_t n = utf8_valid_len((const unsigned char *)p + k, at - k);
    return n == at - k ? k : at - 1;
}

bool ju_isspace_at(const char *p, size_t len, size_t at, size_t *n) {
    size_t l = utf8_valid_len((const unsigned char *)p + at, len - at);
    *n = l ? l : 1;
    if (!l) return false;
    uint32_t c = utf8_decode((const unsigned char *)p + at, l);
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* ------------------------------------------------------------------ semantics */

bool jv_truthy(jv_t v) {
    switch (v.k) {
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0;
    case JV_STR: return v.u.s->len > 0;
    case JV_LIST: return v.u.l->n > 0;
    case JV_DICT: return v.u.d->n > 0;
    case JV_NS: case JV_LOOP: return true;
    default: return false;
    }
}

const char *jv_kind_name(jv_t v) {
    static const char *names[] = {"undefined", "none", "bool", "int", "float", "string", "list", "dict",
                                  "namespace", "loop"};
    if (v.k == JV_LIST && v.u.l->tuple) return "tuple";
    return names[v.k];
}

bool jv_is_number(jv_t v) { return v.k == JV_INT || v.k == JV_FLOAT || v.k == JV_BOOL; }

double jv_num(jv_t v) {
    return v.k == JV_FLOAT ? v.u.f : v.k == JV_INT ? (double)v.u.i : v.k == JV_BOOL ? v.u.b : 0;
}

static bool equal_depth(jv_t a, jv_t b, int depth, bool *err) {
    if (depth > JV_MAX_DEPTH) { *err = true; return false; }
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a.k != JV_FLOAT && b.k != JV_FLOAT)
            return (a.k == JV_BOOL ? a.u.b : a.u.i) == (b.k == JV_BOOL ? b.u.b : b.u.i);
        return jv_num(a) == jv_num(b);
    }
    if (a.k != b.k) return false;
    switch (a.k) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return a.u.s->len == b.u.s->len && !memcmp(a.u.s->p, b.u.s->p, a.u.s->len);
    case JV_LIST:
        if (a.u.l->n != b.u.l->n || a.u.l->tuple != b.u.l->tuple) return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!equal_depth(a.u.l->it[i], b.u.l->it[i], depth + 1, err)) return false;
        return true;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            const jv_t *o = jdict_get(b.u.d, a.u.d->keys[i]->p, a.u.d->keys[i]->len);
            if (!o || !equal_depth(a.u.d->vals[i], *o, depth + 1, err)) return false;
        }
        return true;
    default: return a.u.d == b.u.d;   /* namespaces, loops: identity */
    }
}

bool jv_equal(jv_t a, jv_t b, bool *err) { return equal_depth(a, b, 0, err); }

static int compare_depth(jv_t a, jv_t b, int depth, int *cmp) {
    if (depth > JV_MAX_DEPTH) return -1;
    if (jv_is_number(a) && jv_is_number(b)) {
        double x = jv_num(a), y = jv_num(b);
        if (a.k != JV_FLOAT && b.k != JV_FLOAT) {
            int64_t i = a.k == JV_BOOL ? a.u.b : a.u.i, j = b.k == JV_BOOL ? b.u.b : b.u.i;
            *cmp = i < j ? -1 : i > j;
        } else {
            *cmp = x < y ? -1 : x > y;
        }
        return 0;
    }
    if (a.k == JV_STR && b.k == JV_STR) {   /* UTF-8 byte order is code point order */
        size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        int c = memcmp(a.u.s->p, b.u.s->p, n);
        *cmp = c ? (c < 0 ? -1 : 1) : a.u.s->len < b.u.s->len ? -1 : a.u.s->len > b.u.s->len;
        return 0;
    }
    if (a.k == JV_LIST && b.k == JV_LIST) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
        for (size_t i = 0; i < n; i++) {
            bool err = false;
            if (equal_depth(a.u.l->it[i], b.u.l->it[i], depth + 1, &err)) continue;
            if (err) return -1;
            return compare_depth(a.u.l->it[i], b.u.l->it[i], depth + 1, cmp);
        }
        *cmp = a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
        return 0;
    }
    return -1;
}

int jv_compare(jv_t a, jv_t b, int *cmp) { return compare_depth(a, b, 0, cmp); }

/* ------------------------------------------------------------------ str() and repr() */

void jv_float_repr(strbuf_t *b, double f) {
    if (isnan(f)) { sb_str(b, "nan"); return; }
    if (isinf(f)) { sb_str(b, f < 0 ? "-inf" : "inf"); return; }
    char buf[64];
    int prec = 0;
    for (; prec < 17; prec++) {   /* shortest digits that round-trip */
        snprintf(buf, sizeof buf, "%.*e", prec, f);
        if (strtod(buf, NULL) == f) break;
    }
    char digits[32];
    size_t nd = 0;
    const char *q = buf;
    bool neg = *q == '-';
    if (neg) q++;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    int decpt = atoi(q + 1) + 1;   /* value = 0.DIGITS x 10^decpt */
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (neg) sb_str(b, "-");
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            sb_str(b, "0.");
            for (int i = 0; i < -decpt; i++) sb_str(b, "0");
            sb_add(b, digits, nd);
        } else if ((size_t)decpt >= nd) {
            sb_add(b, digits, nd);
            for (size_t i = nd; i < (size_t)decpt; i++) sb_str(b, "0");
            sb_str(b, ".0");
        } else {
            sb_add(b, digits, (size_t)decpt);
            sb_str(b, ".");
            sb_add(b, digits + decpt, nd - (size_t)decpt);
        }
        return;
    }
    sb_add(b, digits, 1);
    if (nd > 1) { sb_str(b, "."); sb_add(b, digits + 1, nd - 1); }
    int e = decpt - 1;
    sb_printf(b, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
}

static void repr_string(strbuf_t *b, const jstr_t *s) {
    bool has_sq = memchr(s->p, '\'', s->len), has_dq = memchr(s->p, '"', s->len);
    char quote = has_sq && !has_dq ? '"' : '\'';
    sb_add(b, &quote, 1);
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->p[i];
        if (c == '\\' || c == (unsigned char)quote) sb_printf(b, "\\%c", c);
        else if (c == '\n') sb_str(b, "\\n");
        else if (c == '\r') sb_str(b, "\\r");
        else if (c == '\t') sb_str(b, "\\t");
        else if (c < 0x20 || c == 0x7f) sb_printf(b, "\\x%02x", c);
        else sb_add(b, &c, 1);
    }
    sb_add(b, &quote, 1);
}

int jv_repr(strbuf_t *b, jv_t v, int depth) {
    if (depth > JV_MAX_DEPTH) return -1;
    switch (v.k) {
    case JV_STR: repr_string(b, v.u.s); return 0;
    case JV_LIST: {
        const jlist_t *l = v.u.l;
        sb_str(b, l->tuple ? "(" : "[");
        for (size_t i = 0; i < l->n; i++) {
            if (i) sb_str(b, ", ");
            if (jv_repr(b, l->it[i], depth + 1)) return -1;
        }
        sb_str(b, l->tuple ? (l->n == 1 ? ",)" : ")") : "]");
        return 0;
    }
    case JV_DICT: case JV_NS: {
        const jdict_t *d = v.u.d;
        sb_str(b, v.k == JV_NS ? "<Namespace {" : "{");
        for (size_t i = 0; i < d->n; i++) {
            if (i) sb_str(b, ", ");
            repr_string(b, d->keys[i]);
            sb_str(b, ": ");
            if (jv_repr(b, d->vals[i], depth + 1)) return -1;
        }
        sb_str(b, v.k == JV_NS ? "}>" : "}");
        return 0;
    }
    default: return jv_str(b, v);
    }
}

int jv_str(strbuf_t *b, jv_t v) {
    switch (v.k) {
    case JV_UNDEF: return 0;
    case JV_NONE: sb_str(b, "None"); return 0;
    case JV_BOOL: sb_str(b, v.u.b ? "True" : "False"); return 0;
    case JV_INT: sb_printf(b, "%lld", (long long)v.u.i); return 0;
    case JV_FLOAT: jv_float_repr(b, v.u.f); return 0;
    case JV_STR: sb_add(b, v.u.s->p, v.u.s->len); return 0;
    case JV_LOOP: sb_str(b, "<LoopContext>"); return 0;
    default: return jv_repr(b, v, 0);
    }
}
