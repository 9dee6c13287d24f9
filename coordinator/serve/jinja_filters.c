/* jinja_filters.c - the filters ({{ x | trim }}), with Jinja2 3.1's
 * semantics, and transformers' tojson (json.dumps, non-ASCII kept, keys in
 * their order). A filter that needs a string takes str() of anything else, as
 * Jinja's soft_str does. select/reject/map take test and filter names at run
 * time; an unknown one is an error there. */
#include <stdlib.h>
#include <string.h>

#include "coordinator/serve/jinja_internal.h"

static int as_str(const jcall_t *c, jv_t *s) { return jc_str(c, c->self, s); }

static int f_tojson(const jcall_t *c, jv_t *out) {
    if (jc_check(c, 1, "ensure_ascii,indent,sort_keys")) return -1;
    jv_t ascii = jc_arg(c, 0, "ensure_ascii", jv_bool(false)), indent = jc_arg(c, -1, "indent", jv_none());
    jv_t sort = jc_arg(c, -1, "sort_keys", jv_bool(false));
    if (jv_truthy(ascii)) return jc_fail(c, "ensure_ascii=True is not supported");
    if (indent.k != JV_NONE && (indent.k != JV_INT || indent.u.i < 0 || indent.u.i > 64))
        return jc_fail(c, "indent must be an integer 0..64 or none");
    strbuf_t b = {0};
    char msg[256];
    sb_str(&b, "");
    if (jv_tojson(&b, c->self, indent.k == JV_INT ? (int)indent.u.i : -1, jv_truthy(sort), msg, sizeof msg)) {
        sb_free(&b);
        return jeval_fail(c->ev, c->at, "%s", msg);
    }
    int rc = jeval_take_str(c->ev, c->at, &b, out);
    sb_free(&b);
    return rc;
}

static int f_length(const jcall_t *c, jv_t *out) {
    jv_t v = c->self;
    if (jc_check(c, 0, NULL)) return -1;
    switch (v.k) {
    case JV_STR: *out = jv_int((int64_t)ju_count(v.u.s->p, v.u.s->len)); return 0;
    case JV_LIST: *out = jv_int((int64_t)v.u.l->n); return 0;
    case JV_DICT: case JV_NS: *out = jv_int((int64_t)v.u.d->n); return 0;
    case JV_UNDEF: *out = jv_int(0); return 0;
    default: return jc_fail(c, "a %s has no length", jv_kind_name(v));
    }
}

static int f_join(const jcall_t *c, jv_t *out) {
    jv_t sep = jc_arg(c, 0, "d", jv_undef(NULL)), attr = jc_arg(c, 1, "attribute", jv_none());
    const jlist_t *items = NULL;
    if (jc_check(c, 2, "d,attribute") || jc_items(c, c->self, &items)) return -1;
    if (sep.k != JV_UNDEF && sep.k != JV_STR) return jc_fail(c, "the separator must be a string");
    if (attr.k != JV_NONE && attr.k != JV_STR) return jc_fail(c, "attribute must be a string");
    strbuf_t b = {0};
    sb_str(&b, "");
    for (size_t i = 0; i < items->n; i++) {
        jv_t it = items->it[i];
        if (attr.k == JV_STR) {
            const jv_t *v = it.k == JV_DICT ? jdict_get(it.u.d, attr.u.s->p, attr.u.s->len) : NULL;
            it = v ? *v : jv_undef(NULL);
        }
        if (i && sep.k == JV_STR) sb_add(&b, sep.u.s->p, sep.u.s->len);
        if (jv_str(&b, it)) { sb_free(&b); return jc_fail(c, "value nested too deeply"); }
    }
    int rc = jeval_take_str(c->ev, c->at, &b, out);
    sb_free(&b);
    return rc;
}

static int f_first_last(const jcall_t *c, bool last, jv_t *out) {
    const jlist_t *items = NULL;
    if (jc_check(c, 0, NULL) || jc_items(c, c->self, &items)) return -1;
    *out = items->n ? items->it[last ? items->n - 1 : 0] : jv_undef(NULL);
    return 0;
}

static int f_list(const jcall_t *c, jv_t *out) {
    const jlist_t *items = NULL;
    if (jc_check(c, 0, NULL) || jc_items(c, c->self, &items)) return -1;
    jlist_t *l = jlist_new(jeval_arena(c->ev), items->n);
    if (!l) return jeval_oom(c->ev, c->at);
    memcpy(l->it, items->it, items->n * sizeof(jv_t));
    *out = jv_listv(l);
    return 0;
}

static int f_items(const jcall_t *c, jv_t *out) {
    if (jc_check(c, 0, NULL)) return -1;
    if (c->self.k == JV_UNDEF) {
        jlist_t *l = jlist_new(jeval_arena(c->ev), 0);
        if (!l) return jeval_oom(c->ev, c->at);
        *out = jv_listv(l);
        return 0;
    }
    if (c->self.k != JV_DICT) return jc_fail(c, "needs a dict, not %s", jv_kind_name(c->self));
    jlist_t *l = jdict_items(jeval_arena(c->ev), c->self.u.d);
    if (!l) return jeval_oom(c->ev, c->at);
    *out = jv_listv(l);
    return 0;
}

static int f_int(const jcall_t *c, jv_t *out) {
    jv_t dflt = jc_arg(c, 0, "default", jv_int(0)), v = c->self;
    if (jc_check(c, 1, "default")) return -1;
    if (v.k == JV_INT || v.k == JV_BOOL) { *out = jv_int(v.k == JV_INT ? v.u.i : v.u.b); return 0; }
    if (v.k == JV_FLOAT && v.u.f > -9.2e18 && v.u.f < 9.2e18) { *out = jv_int((int64_t)v.u.f); return 0; }
    *out = dflt;
    if (v.k != JV_STR) return 0;
    char *end;
    const char *p = v.u.s->p;
    long long i = strtoll(p, &end, 10);
    if (end != p) {
        while (*end == ' ' || *end == '\t' || *end == '\n') end++;
        if (*end == '\0') { *out = jv_int(i); return 0; }
    }
    double f = strtod(p, &end);
    if (end != p && *end == '\0' && f > -9.2e18 && f < 9.2e18) *out = jv_int((int64_t)f);
    return 0;
}

static int f_escape(const jcall_t *c, jv_t *out) {
    jv_t s;
    if (jc_check(c, 0, NULL) || as_str(c, &s)) return -1;
    strbuf_t b = {0};
    sb_str(&b, "");
    for (size_t i = 0; i < s.u.s->len; i++) {
        char ch = s.u.s->p[i];
        switch (ch) {
        case '&': sb_str(&b, "&amp;"); break;
        case '<': sb_str(&b, "&lt;"); break;
        case '>': sb_str(&b, "&gt;"); break;
        case '"': sb_str(&b, "&#34;"); break;
        case '\'': sb_str(&b, "&#39;"); break;
        default: sb_add(&b, &ch, 1);
        }
    }
    int rc = jeval_take_str(c->ev, c->at, &b, out);
    sb_free(&b);
    return rc;
}

/* item.attr for selectattr/map(attribute=): dotted paths, integers as indexes. */
static jv_t attr_path(jv_t v, const jstr_t *path) {
    const char *p = path->p, *end = p + path->len;
    while (p < end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
        const jv_t *next = v.k == JV_DICT || v.k == JV_NS ? jdict_get(v.u.d, p, n) : NULL;
        if (!next) return jv_undef(NULL);
        v = *next;
        p += n + (dot ? 1 : 0);
    }
    return v;
}

/* select / reject / selectattr / rejectattr */
static int f_select(const jcall_t *c, int id, jv_t *out) {
    bool by_attr = id == F_SELECTATTR || id == F_REJECTATTR, want = id == F_SELECT || id == F_SELECTATTR;
    const jlist_t *items = NULL;
    if (c->n_kwargs) return jc_fail(c, "takes no keyword arguments");
    if (jc_items(c, c->self, &items)) return -1;
    int first = by_attr ? 1 : 0;
    if (by_attr && (c->n_args < 1 || c->args[0].k != JV_STR)) return jc_fail(c, "needs an attribute name");
    int test = -1;
    if (c->n_args > first) {
        jv_t name = c->args[first];
        if (name.k != JV_STR || (test = jb_lookup(JB_TEST, name.u.s->p, name.u.s->len)) < 0)
            return jc_fail(c, "unsupported test '%s' (supported: %s)", name.k == JV_STR ? name.u.s->p : "?", jb_names(JB_TEST));
    }
    jlist_t *l = jlist_new(jeval_arena(c->ev), items->n);
    if (!l) return jeval_oom(c->ev, c->at);
    size_t k = 0;
    for (size_t i = 0; i < items->n; i++) {
        if (jeval_count_step(c->ev, c->at)) return -1;
        jv_t v = by_attr ? attr_path(items->it[i], c->args[0].u.s) : items->it[i];
        bool hit = jv_truthy(v);
        if (test >= 0 && jb_test(c, test, v, c->args + first + 1, c->n_args - first - 1, &hit)) return -1;
        if (hit == want) l->it[k++] = items->it[i];
    }
    l->n = k;
    *out = jv_listv(l);
    return 0;
}

static int f_map(const jcall_t *c, jv_t *out) {
    const jlist_t *items = NULL;
    if (jc_items(c, c->self, &items)) return -1;
    jv_t attr = jc_arg(c, -1, "attribute", jv_undef(NULL)), dflt = jc_arg(c, -1, "default", jv_undef(NULL));
    int filter = -1;
    if (attr.k == JV_UNDEF) {
        jv_t name = jc_arg(c, 0, NULL, jv_undef(NULL));
        if (c->n_kwargs || name.k != JV_STR || (filter = jb_lookup(JB_FILTER, name.u.s->p, name.u.s->len)) < 0)
            return jc_fail(c, "needs attribute='name' or the name of a supported filter (%s)", jb_names(JB_FILTER));
    } else if (attr.k != JV_STR || c->n_args || jc_check(c, 0, "attribute,default")) {
        return attr.k != JV_STR ? jc_fail(c, "attribute must be a string") : jc_fail(c, "takes no positional arguments with attribute=");
    }
    jlist_t *l = jlist_new(jeval_arena(c->ev), items->n);
    if (!l) return jeval_oom(c->ev, c->at);
    for (size_t i = 0; i < items->n; i++) {
        if (jeval_count_step(c->ev, c->at)) return -1;
        if (filter < 0) {
            jv_t v = attr_path(items->it[i], attr.u.s);
            l->it[i] = v.k == JV_UNDEF && dflt.k != JV_UNDEF ? dflt : v;
            continue;
        }
        jcall_t inner = *c;
        inner.self = items->it[i], inner.args = c->args + 1, inner.n_args = c->n_args - 1;
        if (jb_filter(&inner, filter, &l->it[i])) return -1;
    }
    *out = jv_listv(l);
    return 0;
}

static int f_string_op(const jcall_t *c, int id, jv_t *out) {
    jv_t s;
    if (as_str(c, &s)) return -1;
    if (id == F_TRIM) {
        jv_t chars = jc_arg(c, 0, "chars", jv_none());
        if (jc_check(c, 1, "chars")) return -1;
        if (chars.k != JV_NONE && chars.k != JV_STR) return jc_fail(c, "chars must be a string");
        return jb_strip(c, s.u.s, chars.k == JV_STR ? chars.u.s : NULL, 3, out);
    }
    if (id == F_REPLACE) {
        if (jc_check(c, 3, "old,new,count")) return -1;
        return jb_replace(c, s.u.s, jc_arg(c, 0, "old", jv_undef(NULL)), jc_arg(c, 1, "new", jv_undef(NULL)),
                          jc_arg(c, 2, "count", jv_none()), out);
    }
    if (jc_check(c, 0, NULL)) return -1;
    if (id == F_STRING) { *out = s; return 0; }
    static const int method[] = {[F_UPPER] = M_UPPER, [F_LOWER] = M_LOWER, [F_CAPITALIZE] = M_CAPITALIZE, [F_TITLE] = M_TITLE};
    jcall_t m = *c;
    m.self = s;
    return jb_method(&m, method[id], out);
}

int jb_filter(const jcall_t *c, int id, jv_t *out) {
    switch (id) {
    case F_TOJSON: return f_tojson(c, out);
    case F_LENGTH: case F_COUNT: return f_length(c, out);
    case F_JOIN: return f_join(c, out);
    case F_DEFAULT: case F_D: {
        jv_t dflt = jc_arg(c, 0, "default_value", jv_strv(NULL)), boolean = jc_arg(c, 1, "boolean", jv_bool(false));
        if (jc_check(c, 2, "default_value,boolean")) return -1;
        bool use = c->self.k == JV_UNDEF || (jv_truthy(boolean) && !jv_truthy(c->self));
        if (use && dflt.k == JV_STR && !dflt.u.s) return jc_str(c, jv_undef(NULL), out);   /* '' */
        *out = use ? dflt : c->self;
        return 0;
    }
    case F_FIRST: case F_LAST: return f_first_last(c, id == F_LAST, out);
    case F_LIST: return f_list(c, out);
    case F_ITEMS: return f_items(c, out);
    case F_INT: return f_int(c, out);
    case F_ABS:
        if (jc_check(c, 0, NULL)) return -1;
        if (c->self.k == JV_INT && c->self.u.i != INT64_MIN) { *out = jv_int(c->self.u.i < 0 ? -c->self.u.i : c->self.u.i); return 0; }
        if (c->self.k == JV_FLOAT) { *out = jv_float(c->self.u.f < 0 ? -c->self.u.f : c->self.u.f); return 0; }
        return jc_fail(c, "needs a number");
    case F_SAFE: *out = c->self; return jc_check(c, 0, NULL);
    case F_ESCAPE: case F_E: return f_escape(c, out);
    case F_SELECT: case F_REJECT: case F_SELECTATTR: case F_REJECTATTR: return f_select(c, id, out);
    case F_MAP: return f_map(c, out);
    default: return f_string_op(c, id, out);
    }
}
