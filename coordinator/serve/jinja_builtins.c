/* jinja_builtins.c - the names the interpreter knows (filters, tests,
 * methods, global functions), the parser's check against them, the dispatch
 * of a call to its implementation, the tests and the global functions.
 * Filters live in jinja_filters.c, string and dict methods in jinja_methods.c.
 *
 * Globals are transformers' (raise_exception, strftime_now) and Jinja's
 * (namespace, range, dict). Tests follow Jinja2 3.1's definitions. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "coordinator/serve/jinja_internal.h"

static const char *const FILTERS[] = {
    "trim", "tojson", "length", "count", "join", "upper", "lower", "capitalize", "title", "default", "d",
    "first", "last", "list", "items", "string", "int", "abs", "replace", "safe", "escape", "e", "select",
    "reject", "selectattr", "rejectattr", "map", NULL};
static const char *const TESTS[] = {
    "defined", "undefined", "none", "boolean", "true", "false", "integer", "float", "number", "string",
    "mapping", "iterable", "sequence", "equalto", "eq", "ne", "lt", "le", "gt", "ge", "in", "odd", "even",
    "divisibleby", "lower", "upper", "sameas", NULL};
static const char *const METHODS[] = {
    "strip", "lstrip", "rstrip", "split", "startswith", "endswith", "upper", "lower", "replace", "title",
    "capitalize", "find", "join", "items", "keys", "values", "get", NULL};
static const char *const GLOBALS[] = {"namespace", "range", "raise_exception", "strftime_now", "dict", NULL};

static const char *const *table(jb_kind_t kind) {
    return kind == JB_FILTER ? FILTERS : kind == JB_TEST ? TESTS : kind == JB_METHOD ? METHODS : GLOBALS;
}

int jb_lookup(jb_kind_t kind, const char *name, size_t len) {
    const char *const *t = table(kind);
    for (int i = 0; t[i]; i++)
        if (strlen(t[i]) == len && !memcmp(t[i], name, len)) return i;
    return -1;
}

const char *jb_names(jb_kind_t kind) {
    static const char *const joined[] = {
        "trim, tojson, length, count, join, upper, lower, capitalize, title, default, d, first, last, list, "
        "items, string, int, abs, replace, safe, escape, e, select, reject, selectattr, rejectattr, map",
        "defined, undefined, none, boolean, true, false, integer, float, number, string, mapping, iterable, "
        "sequence, equalto, eq, ne, lt, le, gt, ge, in, odd, even, divisibleby, lower, upper, sameas",
        "str.strip, lstrip, rstrip, split, startswith, endswith, upper, lower, replace, title, capitalize, find, "
        "join; dict.items, keys, values, get",
        "namespace, range, raise_exception, strftime_now, dict"};
    return joined[kind];
}

/* ------------------------------------------------------------------ call helpers */

jv_t jc_arg(const jcall_t *c, int pos, const char *kw, jv_t dflt) {
    if (pos >= 0 && pos < c->n_args) return c->args[pos];
    for (int i = 0; kw && i < c->n_kwargs; i++)
        if (!strcmp(c->kwnames[i]->p, kw)) return c->kwargs[i];
    return dflt;
}

int jc_fail(const jcall_t *c, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return jeval_fail(c->ev, c->at, "%s: %s", c->name, msg);
}

int jc_check(const jcall_t *c, int max_pos, const char *kws) {
    if (c->n_args > max_pos) return jc_fail(c, "takes at most %d positional argument%s", max_pos, max_pos == 1 ? "" : "s");
    for (int i = 0; i < c->n_kwargs; i++) {
        const char *k = c->kwnames[i]->p, *hit = kws ? strstr(kws, k) : NULL;
        size_t n = strlen(k);
        while (hit && !((hit == kws || hit[-1] == ',') && (hit[n] == ',' || hit[n] == '\0'))) hit = strstr(hit + 1, k);
        if (!hit) return jc_fail(c, "unexpected keyword argument '%s'", k);
    }
    return 0;
}

int jc_str(const jcall_t *c, jv_t v, jv_t *out) {
    if (v.k == JV_STR) { *out = v; return 0; }
    strbuf_t b = {0};
    sb_str(&b, "");
    if (jv_str(&b, v)) { sb_free(&b); return jc_fail(c, "value nested too deeply"); }
    int rc = jeval_take_str(c->ev, c->at, &b, out);
    sb_free(&b);
    return rc;
}

int jc_items(const jcall_t *c, jv_t v, const jlist_t **out) {
    jarena_t *a = jeval_arena(c->ev);
    jlist_t *l = NULL;
    if (v.k == JV_LIST) { *out = v.u.l; return 0; }
    if (v.k == JV_UNDEF) l = jlist_new(a, 0);
    else if (v.k == JV_DICT) {
        if ((l = jlist_new(a, v.u.d->n)))
            for (size_t i = 0; i < v.u.d->n; i++) l->it[i] = jv_strv(v.u.d->keys[i]);
    } else if (v.k == JV_STR) {
        const jstr_t *s = v.u.s;
        if ((l = jlist_new(a, ju_count(s->p, s->len))))
            for (size_t at = 0, i = 0; at < s->len; i++) {
                size_t next = ju_next(s->p, s->len, at);
                const jstr_t *ch = jstr_new(a, s->p + at, next - at);
                if (!ch) return jeval_oom(c->ev, c->at);
                l->it[i] = jv_strv(ch);
                at = next;
            }
    } else {
        return jc_fail(c, "a value of type %s is not iterable", jv_kind_name(v));
    }
    if (!l) return jeval_oom(c->ev, c->at);
    *out = l;
    return 0;
}

/* ------------------------------------------------------------------ tests */

static bool ascii_cased(const jstr_t *s, bool upper) {
    bool cased = false;
    for (size_t i = 0; i < s->len; i++) {
        char ch = s->p[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
            if ((ch >= 'A' && ch <= 'Z') != upper) return false;
            cased = true;
        }
    }
    return cased;
}

static int compare_test(const jcall_t *c, int id, jv_t v, jv_t other, bool *out) {
    bool err = false;
    int cmp;
    if (id == T_EQUALTO || id == T_EQ || id == T_NE) {
        *out = jv_equal(v, other, &err) != (id == T_NE);
        return err ? jc_fail(c, "value nested too deeply") : 0;
    }
    if (jv_compare(v, other, &cmp)) return jc_fail(c, "cannot order %s and %s", jv_kind_name(v), jv_kind_name(other));
    *out = id == T_LT ? cmp < 0 : id == T_LE ? cmp <= 0 : id == T_GT ? cmp > 0 : cmp >= 0;
    return 0;
}

static int in_test(const jcall_t *c, jv_t v, jv_t seq, bool *out) {
    bool err = false;
    *out = false;
    if (seq.k == JV_STR && v.k == JV_STR) *out = !v.u.s->len || memmem(seq.u.s->p, seq.u.s->len, v.u.s->p, v.u.s->len);
    else if (seq.k == JV_DICT) *out = v.k == JV_STR && jdict_get(seq.u.d, v.u.s->p, v.u.s->len);
    else if (seq.k == JV_LIST)
        for (size_t i = 0; i < seq.u.l->n && !*out; i++) *out = jv_equal(v, seq.u.l->it[i], &err);
    else return jc_fail(c, "'in' needs a string, list or dict, not %s", jv_kind_name(seq));
    return err ? jc_fail(c, "value nested too deeply") : 0;
}

int jb_test(const jcall_t *c, int id, jv_t v, const jv_t *args, int n_args, bool *out) {
    bool need_arg = id >= T_EQUALTO && id <= T_IN;
    if (need_arg || id == T_DIVISIBLEBY || id == T_SAMEAS) {
        if (n_args != 1) return jc_fail(c, "needs one argument");
    } else if (n_args) {
        return jc_fail(c, "takes no argument");
    }
    switch (id) {
    case T_DEFINED: *out = v.k != JV_UNDEF; return 0;
    case T_UNDEFINED: *out = v.k == JV_UNDEF; return 0;
    case T_NONE: *out = v.k == JV_NONE; return 0;
    case T_BOOLEAN: *out = v.k == JV_BOOL; return 0;
    case T_TRUE: *out = v.k == JV_BOOL && v.u.b; return 0;
    case T_FALSE: *out = v.k == JV_BOOL && !v.u.b; return 0;
    case T_INTEGER: *out = v.k == JV_INT; return 0;
    case T_FLOAT: *out = v.k == JV_FLOAT; return 0;
    case T_NUMBER: *out = jv_is_number(v); return 0;
    case T_STRING: *out = v.k == JV_STR; return 0;
    case T_MAPPING: *out = v.k == JV_DICT; return 0;
    case T_ITERABLE: case T_SEQUENCE: *out = v.k == JV_STR || v.k == JV_LIST || v.k == JV_DICT || v.k == JV_UNDEF; return 0;
    case T_IN: return in_test(c, v, args[0], out);
    case T_ODD: case T_EVEN: case T_DIVISIBLEBY: {
        jv_t d = id == T_DIVISIBLEBY ? args[0] : jv_int(2);
        if (v.k != JV_INT || d.k != JV_INT || d.u.i == 0) return jc_fail(c, "needs integers (and a non-zero divisor)");
        int64_t r = v.u.i % d.u.i;
        *out = id == T_ODD ? r != 0 : r == 0;
        return 0;
    }
    case T_LOWER: case T_UPPER: {
        jv_t s;
        if (jc_str(c, v, &s)) return -1;
        *out = ascii_cased(s.u.s, id == T_UPPER);
        return 0;
    }
    case T_SAMEAS: {
        jv_t o = args[0];
        *out = v.k == o.k && (v.k == JV_NONE || v.k == JV_UNDEF || (v.k == JV_BOOL && v.u.b == o.u.b) ||
                              ((v.k == JV_DICT || v.k == JV_NS) && v.u.d == o.u.d) || (v.k == JV_LIST && v.u.l == o.u.l));
        return 0;
    }
    default: return compare_test(c, id, v, args[0], out);
    }
}

/* ------------------------------------------------------------------ globals */

static int g_namespace(const jcall_t *c, bool is_dict, jv_t *out) {
    jarena_t *a = jeval_arena(c->ev);
    jdict_t *d = jdict_new(a, (size_t)c->n_kwargs + 4);
    if (!d) return jeval_oom(c->ev, c->at);
    if (c->n_args > 1) return jc_fail(c, "takes at most one positional argument (a dict)");
    if (c->n_args == 1) {
        if (c->args[0].k != JV_DICT) return jc_fail(c, "the positional argument must be a dict");
        for (size_t i = 0; i < c->args[0].u.d->n; i++)
            if (jdict_set(a, d, c->args[0].u.d->keys[i], c->args[0].u.d->vals[i])) return jeval_oom(c->ev, c->at);
    }
    for (int i = 0; i < c->n_kwargs; i++)
        if (jdict_set(a, d, c->kwnames[i], c->kwargs[i])) return jeval_oom(c->ev, c->at);
    *out = (jv_t){.k = is_dict ? JV_DICT : JV_NS};
    out->u.d = d;
    return 0;
}

static int g_range(const jcall_t *c, jv_t *out) {
    if (c->n_kwargs || c->n_args < 1 || c->n_args > 3) return jc_fail(c, "takes 1 to 3 integer arguments");
    for (int i = 0; i < c->n_args; i++)
        if (c->args[i].k != JV_INT) return jc_fail(c, "arguments must be integers, not %s", jv_kind_name(c->args[i]));
    int64_t start = c->n_args > 1 ? c->args[0].u.i : 0, stop = c->n_args > 1 ? c->args[1].u.i : c->args[0].u.i;
    int64_t step = c->n_args > 2 ? c->args[2].u.i : 1;
    if (step == 0) return jc_fail(c, "step must not be zero");
    double count = step > 0 ? (stop > start ? ((double)stop - start + step - 1) / step : 0)
                            : (start > stop ? ((double)start - stop - step - 1) / -step : 0);
    if (count > 1e8) return jeval_oom(c->ev, c->at);
    jlist_t *l = jlist_new(jeval_arena(c->ev), (size_t)count);
    if (!l) return jeval_oom(c->ev, c->at);
    for (size_t i = 0; i < l->n; i++) l->it[i] = jv_int(start + (int64_t)i * step);
    *out = jv_listv(l);
    return 0;
}

static int g_strftime(const jcall_t *c, jv_t *out) {
    jv_t fmt = jc_arg(c, 0, NULL, jv_undef(NULL));
    if (jc_check(c, 1, NULL) || fmt.k != JV_STR) return fmt.k == JV_STR ? -1 : jc_fail(c, "needs a format string");
    time_t now = time(NULL);
    struct tm tm;
    char buf[256];
    size_t n = strftime(buf, sizeof buf, fmt.u.s->p, localtime_r(&now, &tm));
    const jstr_t *s = jstr_new(jeval_arena(c->ev), buf, n);
    if (!s) return jeval_oom(c->ev, c->at);
    *out = jv_strv(s);
    return 0;
}

static int global(const jcall_t *c, int id, jv_t *out) {
    switch (id) {
    case G_NAMESPACE: return g_namespace(c, false, out);
    case G_DICT: return g_namespace(c, true, out);
    case G_RANGE: return g_range(c, out);
    case G_STRFTIME_NOW: return g_strftime(c, out);
    default: {   /* raise_exception(message): the template refuses the input */
        jv_t msg = jc_arg(c, 0, NULL, jv_undef(NULL)), s;
        if (jc_str(c, msg, &s)) return -1;
        return jeval_fail(c->ev, c->at, "raise_exception: %s", s.u.s->p);
    }
    }
}

int jb_call(jeval_t *ev, jb_kind_t kind, int id, const jnode_t *at, jv_t self, const jv_t *args, int n_args,
            const jstr_t *const *kwnames, const jv_t *kwargs, int n_kwargs, jv_t *out) {
    jcall_t c = {ev, at, table(kind)[id], self, args, n_args, kwnames, kwargs, n_kwargs};
    switch (kind) {
    case JB_FILTER: return jb_filter(&c, id, out);
    case JB_METHOD: return jb_method(&c, id, out);
    case JB_GLOBAL: return global(&c, id, out);
    default: {
        bool res;
        if (n_kwargs) return jc_fail(&c, "takes no keyword arguments");
        if (jb_test(&c, id, self, args, n_args, &res)) return -1;
        *out = jv_bool(res);
        return 0;
    }
    }
}
