/* jinja_methods.c - the Python methods templates call on strings
 * (strip, split, startswith, replace, ...) and dicts (items, get, ...),
 * with Python's semantics: whitespace is Unicode whitespace, positions are
 * code points. Case mapping is ASCII only (Python maps all of Unicode). */
#include <string.h>

#include "coordinator/serve/jinja_internal.h"

static int new_str(const jcall_t *c, const char *p, size_t len, jv_t *out) {
    const jstr_t *s = jstr_new(jeval_arena(c->ev), p, len);
    if (!s) return jeval_oom(c->ev, c->at);
    *out = jv_strv(s);
    return 0;
}

/* Is the code point at s[at] in chars (or whitespace when chars is NULL)? Its length in *n. */
static bool strippable(const jstr_t *s, size_t at, const jstr_t *chars, size_t *n) {
    if (!chars) return ju_isspace_at(s->p, s->len, at, n);
    *n = ju_next(s->p, s->len, at) - at;
    for (size_t k = 0; k < chars->len; k = ju_next(chars->p, chars->len, k)) {
        size_t m = ju_next(chars->p, chars->len, k) - k;
        if (m == *n && !memcmp(chars->p + k, s->p + at, m)) return true;
    }
    return false;
}

int jb_strip(const jcall_t *c, const jstr_t *s, const jstr_t *chars, int which, jv_t *out) {
    size_t from = 0, to = s->len, n;
    if (which & 1)
        while (from < to && strippable(s, from, chars, &n)) from += n;
    if (which & 2)
        while (to > from) {
            size_t k = ju_prev(s->p, to);
            if (!strippable(s, k, chars, &n) || k + n != to) break;
            to = k;
        }
    return new_str(c, s->p + from, to - from, out);
}

static int push_piece(const jcall_t *c, strbuf_t *pieces, size_t *n, const char *p, size_t len) {
    jv_t v;
    if (new_str(c, p, len, &v)) return -1;
    sb_add(pieces, &v, sizeof v);
    (*n)++;
    return 0;
}

static int finish_list(const jcall_t *c, strbuf_t *pieces, size_t n, jv_t *out) {
    if (pieces->oom) { sb_free(pieces); return jeval_oom(c->ev, c->at); }
    jlist_t *l = jlist_new(jeval_arena(c->ev), n);
    if (l && n) memcpy(l->it, pieces->p, n * sizeof(jv_t));
    sb_free(pieces);
    if (!l) return jeval_oom(c->ev, c->at);
    *out = jv_listv(l);
    return 0;
}

/* str.split(sep=None, maxsplit=-1) */
static int split(const jcall_t *c, const jstr_t *s, jv_t *out) {
    jv_t sep = jc_arg(c, 0, "sep", jv_none()), maxv = jc_arg(c, 1, "maxsplit", jv_int(-1));
    if (jc_check(c, 2, "sep,maxsplit")) return -1;
    if ((sep.k != JV_NONE && sep.k != JV_STR) || maxv.k != JV_INT) return jc_fail(c, "sep must be a string or none, maxsplit an integer");
    int64_t max = maxv.u.i;
    strbuf_t pieces = {0};
    size_t n = 0, at = 0, w;
    if (sep.k == JV_STR) {
        const jstr_t *d = sep.u.s;
        if (!d->len) return jc_fail(c, "empty separator");
        for (;;) {
            const char *hit = max != 0 ? memmem(s->p + at, s->len - at, d->p, d->len) : NULL;
            if (!hit) break;
            if (push_piece(c, &pieces, &n, s->p + at, (size_t)(hit - s->p) - at)) return sb_free(&pieces), -1;
            at = (size_t)(hit - s->p) + d->len;
            if (max > 0) max--;
        }
        if (push_piece(c, &pieces, &n, s->p + at, s->len - at)) return sb_free(&pieces), -1;
        return finish_list(c, &pieces, n, out);
    }
    for (;;) {   /* runs of whitespace; none at the ends */
        while (at < s->len && ju_isspace_at(s->p, s->len, at, &w)) at += w;
        if (at >= s->len) break;
        if (max == 0) { if (push_piece(c, &pieces, &n, s->p + at, s->len - at)) return sb_free(&pieces), -1; break; }
        size_t end = at;
        while (end < s->len && !ju_isspace_at(s->p, s->len, end, &w)) end += w;
        if (push_piece(c, &pieces, &n, s->p + at, end - at)) return sb_free(&pieces), -1;
        at = end;
        if (max > 0) max--;
    }
    return finish_list(c, &pieces, n, out);
}

static bool affix_match(const jstr_t *s, const jstr_t *a, bool start) {
    if (a->len > s->len) return false;
    return !memcmp(start ? s->p : s->p + s->len - a->len, a->p, a->len);
}

/* str.startswith / endswith (a string or a tuple of strings) */
static int affix(const jcall_t *c, const jstr_t *s, bool start, jv_t *out) {
    jv_t a = jc_arg(c, 0, NULL, jv_undef(NULL));
    if (jc_check(c, 1, NULL)) return -1;
    bool hit = false;
    if (a.k == JV_STR) hit = affix_match(s, a.u.s, start);
    else if (a.k == JV_LIST)
        for (size_t i = 0; i < a.u.l->n; i++) {
            if (a.u.l->it[i].k != JV_STR) return jc_fail(c, "needs strings");
            hit = hit || affix_match(s, a.u.l->it[i].u.s, start);
        }
    else return jc_fail(c, "needs a string or a tuple of strings");
    *out = jv_bool(hit);
    return 0;
}

/* ASCII case mapping: 0 lower, 1 upper, 2 capitalize, 3 title. */
static int recase(const jcall_t *c, const jstr_t *s, int mode, jv_t *out) {
    jv_t v;
    if (new_str(c, s->p, s->len, &v)) return -1;
    char *p = (char *)v.u.s->p;
    bool prev_cased = false;
    for (size_t i = 0; i < s->len; i++) {
        char ch = p[i];
        bool lower = ch >= 'a' && ch <= 'z', upper = ch >= 'A' && ch <= 'Z';
        bool to_upper = mode == 1 || (mode == 2 && i == 0) || (mode == 3 && !prev_cased);
        if (to_upper && lower) p[i] = (char)(ch - 32);
        else if (!to_upper && upper) p[i] = (char)(ch + 32);
        prev_cased = lower || upper;
    }
    *out = v;
    return 0;
}

int jb_replace(const jcall_t *c, const jstr_t *s, jv_t old, jv_t new, jv_t count, jv_t *out) {
    if (old.k != JV_STR || new.k != JV_STR) return jc_fail(c, "needs two strings");
    if (count.k != JV_INT && count.k != JV_NONE) return jc_fail(c, "count must be an integer");
    if (!old.u.s->len) return jc_fail(c, "replacing the empty string is not supported");
    int64_t left = count.k == JV_INT ? count.u.i : -1;
    strbuf_t b = {0};
    sb_str(&b, "");
    size_t at = 0;
    const char *hit;
    while (left != 0 && (hit = memmem(s->p + at, s->len - at, old.u.s->p, old.u.s->len))) {
        sb_add(&b, s->p + at, (size_t)(hit - s->p) - at);
        sb_add(&b, new.u.s->p, new.u.s->len);
        at = (size_t)(hit - s->p) + old.u.s->len;
        if (left > 0) left--;
    }
    sb_add(&b, s->p + at, s->len - at);
    int rc = jeval_take_str(c->ev, c->at, &b, out);
    sb_free(&b);
    return rc;
}

static int join(const jcall_t *c, const jstr_t *sep, jv_t *out) {
    const jlist_t *items = NULL;
    if (jc_check(c, 1, NULL) || jc_items(c, jc_arg(c, 0, NULL, jv_undef(NULL)), &items)) return -1;
    strbuf_t b = {0};
    sb_str(&b, "");
    for (size_t i = 0; i < items->n; i++) {
        if (items->it[i].k != JV_STR) { sb_free(&b); return jc_fail(c, "item %zu is a %s, not a string", i, jv_kind_name(items->it[i])); }
        if (i) sb_add(&b, sep->p, sep->len);
        sb_add(&b, items->it[i].u.s->p, items->it[i].u.s->len);
    }
    int rc = jeval_take_str(c->ev, c->at, &b, out);
    sb_free(&b);
    return rc;
}

static int string_method(const jcall_t *c, int id, const jstr_t *s, jv_t *out) {
    switch (id) {
    case M_STRIP: case M_LSTRIP: case M_RSTRIP: {
        jv_t chars = jc_arg(c, 0, NULL, jv_none());
        if (jc_check(c, 1, NULL)) return -1;
        if (chars.k != JV_NONE && chars.k != JV_STR) return jc_fail(c, "chars must be a string or none");
        return jb_strip(c, s, chars.k == JV_STR ? chars.u.s : NULL, id == M_STRIP ? 3 : id == M_LSTRIP ? 1 : 2, out);
    }
    case M_SPLIT: return split(c, s, out);
    case M_STARTSWITH: case M_ENDSWITH: return affix(c, s, id == M_STARTSWITH, out);
    case M_UPPER: case M_LOWER: case M_CAPITALIZE: case M_TITLE:
        if (jc_check(c, 0, NULL)) return -1;
        return recase(c, s, id == M_LOWER ? 0 : id == M_UPPER ? 1 : id == M_CAPITALIZE ? 2 : 3, out);
    case M_REPLACE:
        if (jc_check(c, 3, NULL)) return -1;
        return jb_replace(c, s, jc_arg(c, 0, NULL, jv_undef(NULL)), jc_arg(c, 1, NULL, jv_undef(NULL)),
                          jc_arg(c, 2, NULL, jv_none()), out);
    case M_FIND: {
        jv_t sub = jc_arg(c, 0, NULL, jv_undef(NULL));
        if (jc_check(c, 1, NULL)) return -1;
        if (sub.k != JV_STR) return jc_fail(c, "needs a string");
        const char *hit = sub.u.s->len ? memmem(s->p, s->len, sub.u.s->p, sub.u.s->len) : s->p;
        *out = jv_int(hit ? (int64_t)ju_count(s->p, (size_t)(hit - s->p)) : -1);
        return 0;
    }
    case M_JOIN: return join(c, s, out);
    default: return jc_fail(c, "not a method of strings");
    }
}

static int dict_method(const jcall_t *c, int id, const jdict_t *d, jv_t *out) {
    if (id == M_GET) {
        jv_t key = jc_arg(c, 0, NULL, jv_undef(NULL)), dflt = jc_arg(c, 1, NULL, jv_none());
        if (jc_check(c, 2, NULL)) return -1;
        const jv_t *v = key.k == JV_STR ? jdict_get(d, key.u.s->p, key.u.s->len) : NULL;
        *out = v ? *v : dflt;
        return 0;
    }
    if (id != M_ITEMS && id != M_KEYS && id != M_VALUES) return jc_fail(c, "not a method of dicts");
    if (jc_check(c, 0, NULL)) return -1;
    jarena_t *a = jeval_arena(c->ev);
    jlist_t *l = id == M_ITEMS ? jdict_items(a, d) : jlist_new(a, d->n);
    if (!l) return jeval_oom(c->ev, c->at);
    for (size_t i = 0; id != M_ITEMS && i < d->n; i++) l->it[i] = id == M_KEYS ? jv_strv(d->keys[i]) : d->vals[i];
    *out = jv_listv(l);
    return 0;
}

int jb_method(const jcall_t *c, int id, jv_t *out) {
    if (c->self.k == JV_STR) return string_method(c, id, c->self.u.s, out);
    if (c->self.k == JV_DICT) return dict_method(c, id, c->self.u.d, out);
    return jc_fail(c, "a %s has no such method", jv_kind_name(c->self));
}
