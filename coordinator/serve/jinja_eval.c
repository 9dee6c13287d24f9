/* jinja_eval.c - runs a parsed template (jinja_internal.h): statements write
 * to the output, expressions make values in the render's arena.
 *
 * Scoping is Jinja's: a for loop's body has its own frame (a set inside a loop
 * is gone after it, which is why templates use namespace()), if blocks do not.
 * Undefined is Jinja's default Undefined: it prints as nothing, is false and
 * iterates as empty, but reading an attribute or item of it, or using it in
 * arithmetic, is an error. Every evaluated node costs one step, and the arena
 * plus the output are held to the memory budget: both limits end the render
 * with an error instead of hanging or swapping. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/serve/jinja_internal.h"

#define MAX_FRAMES 128

struct jeval {
    jarena_t *a;
    strbuf_t *out;
    jdict_t *frames[MAX_FRAMES];
    int n_frames;
    uint64_t steps, max_steps;
    size_t max_memory;
    spex_err_t *err;
};

enum { FLOW_OK = 0, FLOW_BREAK = 1, FLOW_CONTINUE = 2, FLOW_ERROR = -1 };

jarena_t *jeval_arena(jeval_t *ev) { return ev->a; }

int jeval_fail(jeval_t *ev, const jnode_t *at, const char *fmt, ...) {
    int n = at ? snprintf(ev->err->msg, sizeof ev->err->msg, "%d:%d: ", at->line, at->col) : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->err->msg + n, sizeof ev->err->msg - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

int jeval_oom(jeval_t *ev, const jnode_t *at) {
    return jeval_fail(ev, at, "the template needed more than %zu MiB (memory limit)", ev->max_memory >> 20);
}

static bool over_memory(const jeval_t *ev) {
    return ev->a->exhausted || ev->out->oom || ev->a->used + ev->out->n > ev->max_memory;
}

int jeval_charge(jeval_t *ev, const jnode_t *at, uint64_t units) {
    ev->steps += units;
    if (ev->steps <= ev->max_steps) return 0;
    return jeval_fail(ev, at, "the template took more than %llu steps (step limit)", (unsigned long long)ev->max_steps);
}

int jeval_count_step(jeval_t *ev, const jnode_t *at) { return jeval_charge(ev, at, 1); }

/* The work a value costs to scan, in steps: strings by 64 bytes, lists and dicts by 8 entries. */
static uint64_t size_units(jv_t v) {
    switch (v.k) {
    case JV_STR: return v.u.s->len / 64;
    case JV_LIST: return v.u.l->n / 8;
    case JV_DICT: case JV_NS: return v.u.d->n / 8;
    default: return 0;
    }
}

int jeval_take_str(jeval_t *ev, const jnode_t *at, strbuf_t *b, jv_t *out) {
    if (b->oom) return jeval_oom(ev, at);
    if (jeval_charge(ev, at, b->n / 64)) return -1;
    const jstr_t *s = jstr_new(ev->a, b->p ? b->p : "", b->n);
    sb_reset(b);
    if (!s) return jeval_oom(ev, at);
    *out = jv_strv(s);
    return 0;
}

/* ------------------------------------------------------------------ variables */

static jv_t lookup(const jeval_t *ev, const jstr_t *name) {
    for (int f = ev->n_frames - 1; f >= 0; f--) {
        const jv_t *v = jdict_get(ev->frames[f], name->p, name->len);
        if (v) return *v;
    }
    return jv_undef(name);
}

static int assign(jeval_t *ev, const jnode_t *at, const jstr_t *name, jv_t v) {
    return jdict_set(ev->a, ev->frames[ev->n_frames - 1], name, v) ? jeval_oom(ev, at) : 0;
}

static int push_frame(jeval_t *ev, const jnode_t *at) {
    if (ev->n_frames == MAX_FRAMES) return jeval_fail(ev, at, "loops nested deeper than %d", MAX_FRAMES);
    if (!(ev->frames[ev->n_frames] = jdict_new(ev->a, 4))) return jeval_oom(ev, at);
    ev->n_frames++;
    return 0;
}

/* ------------------------------------------------------------------ expressions */

static int eval(jeval_t *ev, const jnode_t *n, jv_t *out);

static int undefined_error(jeval_t *ev, const jnode_t *at, jv_t v) {
    if (v.u.s) return jeval_fail(ev, at, "'%.*s' is undefined", (int)v.u.s->len, v.u.s->p);
    return jeval_fail(ev, at, "an undefined value was used");
}

static jv_t loop_attr(const jloop_t *lp, const char *name) {
    if (!strcmp(name, "index0")) return jv_int(lp->index0);
    if (!strcmp(name, "index")) return jv_int(lp->index0 + 1);
    if (!strcmp(name, "revindex")) return jv_int(lp->length - lp->index0);
    if (!strcmp(name, "revindex0")) return jv_int(lp->length - lp->index0 - 1);
    if (!strcmp(name, "first")) return jv_bool(lp->index0 == 0);
    if (!strcmp(name, "last")) return jv_bool(lp->index0 == lp->length - 1);
    if (!strcmp(name, "length")) return jv_int(lp->length);
    if (!strcmp(name, "previtem")) return lp->has_prev ? lp->prev : jv_undef(NULL);
    if (!strcmp(name, "nextitem")) return lp->has_next ? lp->next : jv_undef(NULL);
    return jv_undef(NULL);
}

/* obj[key] with Python's rules; a missing key or index is undefined. */
static int get_item(jeval_t *ev, const jnode_t *at, jv_t obj, jv_t key, jv_t *out) {
    *out = jv_undef(NULL);
    if (obj.k == JV_UNDEF) return undefined_error(ev, at, obj);
    if ((obj.k == JV_DICT || obj.k == JV_NS) && key.k == JV_STR) {
        if (jeval_charge(ev, at, obj.u.d->n / 8)) return -1;   /* a linear search */
        const jv_t *v = jdict_get(obj.u.d, key.u.s->p, key.u.s->len);
        if (v) *out = *v;
    } else if (obj.k == JV_LOOP && key.k == JV_STR) {
        *out = loop_attr(obj.u.lp, key.u.s->p);
    } else if ((obj.k == JV_LIST || obj.k == JV_STR) && (key.k == JV_INT || key.k == JV_BOOL)) {
        int64_t i = key.k == JV_INT ? key.u.i : key.u.b;
        size_t n = obj.k == JV_LIST ? obj.u.l->n : ju_count(obj.u.s->p, obj.u.s->len);
        if (i < 0) i += (int64_t)n;
        if (i < 0 || (uint64_t)i >= n) return 0;
        if (obj.k == JV_LIST) { *out = obj.u.l->it[i]; return 0; }
        const jstr_t *s = obj.u.s;
        size_t from = ju_offset(s->p, s->len, (size_t)i), to = ju_next(s->p, s->len, from);
        const jstr_t *c = jstr_new(ev->a, s->p + from, to - from);
        if (!c) return jeval_oom(ev, at);
        *out = jv_strv(c);
    }
    return 0;
}

static int slice_bound(jeval_t *ev, const jnode_t *n, int64_t len, int64_t step, bool is_start, int64_t *out) {
    jv_t v = jv_none();
    if (n && eval(ev, n, &v)) return -1;
    if (v.k == JV_NONE || v.k == JV_UNDEF) {
        *out = step > 0 ? (is_start ? 0 : len) : (is_start ? len - 1 : -1);
        return 0;
    }
    if (v.k != JV_INT) return jeval_fail(ev, n, "slice indices must be integers, not %s", jv_kind_name(v));
    int64_t i = v.u.i;
    if (i < 0) { i += len; if (i < 0) i = step > 0 ? 0 : -1; }
    else if (i >= len) i = step > 0 ? len : len - 1;
    *out = i;
    return 0;
}

static int eval_slice(jeval_t *ev, const jnode_t *n, jv_t *out) {
    jv_t obj, stepv = jv_none();
    if (eval(ev, n->a, &obj) || (n->d && eval(ev, n->d, &stepv))) return -1;
    if (obj.k == JV_UNDEF) return undefined_error(ev, n, obj);
    if (obj.k != JV_LIST && obj.k != JV_STR) return jeval_fail(ev, n, "cannot slice a %s", jv_kind_name(obj));
    int64_t step = stepv.k == JV_INT ? stepv.u.i : 1;
    if (stepv.k != JV_INT && stepv.k != JV_NONE) return jeval_fail(ev, n, "slice step must be an integer");
    if (step == 0) return jeval_fail(ev, n, "slice step cannot be zero");
    const jstr_t *s = obj.k == JV_STR ? obj.u.s : NULL;
    int64_t len = s ? (int64_t)ju_count(s->p, s->len) : (int64_t)obj.u.l->n, start, stop;
    if (slice_bound(ev, n->b, len, step, true, &start) || slice_bound(ev, n->c, len, step, false, &stop)) return -1;
    int64_t count = step > 0 ? (stop > start ? (stop - start + step - 1) / step : 0)
                             : (start > stop ? (start - stop - step - 1) / -step : 0);
    if (s) {
        strbuf_t b = {0};
        sb_str(&b, "");
        for (int64_t k = 0, i = start; k < count; k++, i += step) {
            size_t from = ju_offset(s->p, s->len, (size_t)i);   /* quadratic, but strings here are short */
            sb_add(&b, s->p + from, ju_next(s->p, s->len, from) - from);
        }
        int rc = jeval_take_str(ev, n, &b, out);
        sb_free(&b);
        return rc;
    }
    jlist_t *l = jlist_new(ev->a, (size_t)count);
    if (!l) return jeval_oom(ev, n);
    for (int64_t k = 0, i = start; k < count; k++, i += step) l->it[k] = obj.u.l->it[i];
    *out = jv_listv(l);
    return 0;
}

static int eval_attr(jeval_t *ev, const jnode_t *n, jv_t *out) {
    jv_t obj;
    if (eval(ev, n->a, &obj)) return -1;
    if (obj.k == JV_UNDEF) return undefined_error(ev, n, obj);
    if (obj.k == JV_LOOP) { *out = loop_attr(obj.u.lp, n->name->p); return 0; }
    return get_item(ev, n, obj, jv_strv(n->name), out);
}

static int eval_items(jeval_t *ev, jnode_t **items, int n, jv_t *vals) {
    for (int i = 0; i < n; i++)
        if (eval(ev, items[i], &vals[i])) return -1;
    return 0;
}

static int eval_collection(jeval_t *ev, const jnode_t *n, jv_t *out) {
    if (n->kind == JN_DICT) {
        jdict_t *d = jdict_new(ev->a, (size_t)n->n_args);
        if (!d) return jeval_oom(ev, n);
        for (int i = 0; i < n->n_args; i++) {
            jv_t k, v;
            if (eval(ev, n->args[i], &k) || eval(ev, n->kwargs[i], &v)) return -1;
            if (k.k != JV_STR) return jeval_fail(ev, n->args[i], "dict keys must be strings here, not %s", jv_kind_name(k));
            if (jdict_set(ev->a, d, k.u.s, v)) return jeval_oom(ev, n);
        }
        *out = jv_dictv(d);
        return 0;
    }
    jlist_t *l = jlist_new(ev->a, (size_t)n->n_args);
    if (!l) return jeval_oom(ev, n);
    l->tuple = n->kind == JN_TUPLE;
    if (eval_items(ev, n->args, n->n_args, l->it)) return -1;
    *out = jv_listv(l);
    return 0;
}

/* ------------------------------------------------------------------ operators */

static int concat_values(jeval_t *ev, const jnode_t *at, jv_t a, jv_t b, jv_t *out) {
    strbuf_t sb = {0};
    sb_str(&sb, "");
    if (jv_str(&sb, a) || jv_str(&sb, b)) { sb_free(&sb); return jeval_fail(ev, at, "value nested too deeply"); }
    int rc = jeval_take_str(ev, at, &sb, out);
    sb_free(&sb);
    return rc;
}

static int repeat(jeval_t *ev, const jnode_t *at, jv_t seq, int64_t times, jv_t *out) {
    if (times < 0) times = 0;
    size_t unit = seq.k == JV_STR ? seq.u.s->len : seq.u.l->n * sizeof(jv_t);
    if (unit && (uint64_t)times > (ev->max_memory / unit)) return jeval_oom(ev, at);
    if (seq.k == JV_STR) {
        strbuf_t b = {0};
        sb_str(&b, "");
        for (int64_t i = 0; i < times; i++) sb_add(&b, seq.u.s->p, seq.u.s->len);
        int rc = jeval_take_str(ev, at, &b, out);
        sb_free(&b);
        return rc;
    }
    jlist_t *l = jlist_new(ev->a, seq.u.l->n * (size_t)times);
    if (!l) return jeval_oom(ev, at);
    for (int64_t i = 0; i < times; i++) memcpy(l->it + i * (int64_t)seq.u.l->n, seq.u.l->it, seq.u.l->n * sizeof(jv_t));
    *out = jv_listv(l);
    return 0;
}

static int64_t as_int(jv_t v) { return v.k == JV_BOOL ? v.u.b : v.u.i; }

static int int_arith(jeval_t *ev, const jnode_t *at, int op, int64_t x, int64_t y, jv_t *out) {
    int64_t r = 0;
    bool ovf = false;
    switch (op) {
    case JO_ADD: ovf = __builtin_add_overflow(x, y, &r); break;
    case JO_SUB: ovf = __builtin_sub_overflow(x, y, &r); break;
    case JO_MUL: ovf = __builtin_mul_overflow(x, y, &r); break;
    case JO_DIV:
        if (!y) return jeval_fail(ev, at, "division by zero");
        *out = jv_float((double)x / (double)y);
        return 0;
    case JO_FLOORDIV: case JO_MOD:
        if (!y) return jeval_fail(ev, at, "division by zero");
        if (x == INT64_MIN && y == -1) { ovf = true; break; }
        r = x / y;
        if ((x % y != 0) && ((x < 0) != (y < 0))) r--;   /* Python floors */
        if (op == JO_MOD) r = x - r * y;
        break;
    case JO_POW:
        if (y < 0) { *out = jv_float(1.0 / (double)x); return y == -1 ? 0 : jeval_fail(ev, at, "negative powers are not supported"); }
        r = 1;
        for (int64_t i = 0; i < y && !ovf; i++) ovf = __builtin_mul_overflow(r, x, &r);
        break;
    }
    if (ovf) return jeval_fail(ev, at, "integer overflow");
    *out = jv_int(r);
    return 0;
}

static int float_arith(jeval_t *ev, const jnode_t *at, int op, double x, double y, jv_t *out) {
    double r;
    switch (op) {
    case JO_ADD: r = x + y; break;
    case JO_SUB: r = x - y; break;
    case JO_MUL: r = x * y; break;
    case JO_DIV: if (y == 0) return jeval_fail(ev, at, "division by zero"); r = x / y; break;
    default: return jeval_fail(ev, at, "this operator is not supported on floats");
    }
    *out = jv_float(r);
    return 0;
}

static int binop(jeval_t *ev, const jnode_t *n, jv_t a, jv_t b, jv_t *out) {
    static const char *syms[] = {"+", "-", "*", "/", "//", "%", "**", "~"};
    if (n->op == JO_CONCAT) return concat_values(ev, n, a, b, out);
    if (a.k == JV_UNDEF) return undefined_error(ev, n->a, a);
    if (b.k == JV_UNDEF) return undefined_error(ev, n->b, b);
    if (n->op == JO_ADD && a.k == JV_STR && b.k == JV_STR) return concat_values(ev, n, a, b, out);
    if (n->op == JO_ADD && a.k == JV_LIST && b.k == JV_LIST) {
        jlist_t *l = jlist_new(ev->a, a.u.l->n + b.u.l->n);
        if (!l) return jeval_oom(ev, n);
        memcpy(l->it, a.u.l->it, a.u.l->n * sizeof(jv_t));
        memcpy(l->it + a.u.l->n, b.u.l->it, b.u.l->n * sizeof(jv_t));
        l->tuple = a.u.l->tuple;
        *out = jv_listv(l);
        return 0;
    }
    if (n->op == JO_MUL && (a.k == JV_STR || a.k == JV_LIST) && (b.k == JV_INT || b.k == JV_BOOL)) return repeat(ev, n, a, as_int(b), out);
    if (n->op == JO_MUL && (b.k == JV_STR || b.k == JV_LIST) && (a.k == JV_INT || a.k == JV_BOOL)) return repeat(ev, n, b, as_int(a), out);
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a.k != JV_FLOAT && b.k != JV_FLOAT) return int_arith(ev, n, n->op, as_int(a), as_int(b), out);
        return float_arith(ev, n, n->op, jv_num(a), jv_num(b), out);
    }
    return jeval_fail(ev, n, "unsupported operand types for %s: %s and %s", syms[n->op], jv_kind_name(a), jv_kind_name(b));
}

static int contains(jeval_t *ev, const jnode_t *at, jv_t item, jv_t seq, bool *out) {
    bool err = false;
    *out = false;
    switch (seq.k) {
    case JV_UNDEF: return 0;
    case JV_STR:
        if (item.k != JV_STR) return jeval_fail(ev, at, "'in <string>' requires a string, not %s", jv_kind_name(item));
        *out = item.u.s->len == 0 || memmem(seq.u.s->p, seq.u.s->len, item.u.s->p, item.u.s->len);
        return 0;
    case JV_LIST:
        for (size_t i = 0; i < seq.u.l->n && !*out; i++) *out = jv_equal(item, seq.u.l->it[i], &err);
        break;
    case JV_DICT: case JV_NS:
        *out = item.k == JV_STR && jdict_get(seq.u.d, item.u.s->p, item.u.s->len);
        return 0;
    default:
        return jeval_fail(ev, at, "argument of type %s is not iterable", jv_kind_name(seq));
    }
    return err ? jeval_fail(ev, at, "value nested too deeply") : 0;
}

static int compare1(jeval_t *ev, const jnode_t *at, int op, jv_t a, jv_t b, bool *res) {
    bool err = false;
    int cmp;
    if (jeval_charge(ev, at, size_units(a) + size_units(b))) return -1;
    switch (op) {
    case JO_EQ: *res = jv_equal(a, b, &err); break;
    case JO_NE: *res = !jv_equal(a, b, &err); break;
    case JO_IN: return contains(ev, at, a, b, res);
    case JO_NOTIN: if (contains(ev, at, a, b, res)) return -1; *res = !*res; return 0;
    default:
        if (jv_compare(a, b, &cmp))
            return jeval_fail(ev, at, "cannot order %s and %s", jv_kind_name(a), jv_kind_name(b));
        *res = op == JO_LT ? cmp < 0 : op == JO_LE ? cmp <= 0 : op == JO_GT ? cmp > 0 : cmp >= 0;
    }
    return err ? jeval_fail(ev, at, "value nested too deeply") : 0;
}

static int eval_compare(jeval_t *ev, const jnode_t *n, jv_t *out) {
    jv_t left, right;
    if (eval(ev, n->a, &left)) return -1;
    bool res = true;
    for (int i = 0; i < n->n_args && res; i++) {
        if (eval(ev, n->args[i], &right) || compare1(ev, n->args[i], n->ops[i], left, right, &res)) return -1;
        left = right;
    }
    *out = jv_bool(res);
    return 0;
}

/* ------------------------------------------------------------------ calls */

static int eval_builtin(jeval_t *ev, const jnode_t *n, jb_kind_t kind, jv_t self, jv_t *out) {
    jv_t args[16], kw[32];
    if (n->n_args > 16) return jeval_fail(ev, n, "too many arguments");
    if (eval_items(ev, n->args, n->n_args, args) || eval_items(ev, n->kwargs, n->n_kwargs, kw)) return -1;
    uint64_t units = size_units(self);   /* builtins scan their inputs */
    for (int i = 0; i < n->n_args; i++) units += size_units(args[i]);
    if (jeval_charge(ev, n, units)) return -1;
    return jb_call(ev, kind, n->op, n, self, args, n->n_args, n->kwnames, kw, n->n_kwargs, out);
}

static int eval_unary(jeval_t *ev, const jnode_t *n, jv_t *out) {
    jv_t v;
    if (eval(ev, n->a, &v)) return -1;
    if (n->kind == JN_NOT) { *out = jv_bool(!jv_truthy(v)); return 0; }
    if (v.k == JV_UNDEF) return undefined_error(ev, n->a, v);
    if (v.k == JV_FLOAT) { *out = jv_float(n->kind == JN_NEG ? -v.u.f : v.u.f); return 0; }
    if (v.k != JV_INT && v.k != JV_BOOL) return jeval_fail(ev, n, "bad operand type for unary %c: %s", n->kind == JN_NEG ? '-' : '+', jv_kind_name(v));
    if (n->kind == JN_NEG && as_int(v) == INT64_MIN) return jeval_fail(ev, n, "integer overflow");
    *out = jv_int(n->kind == JN_NEG ? -as_int(v) : as_int(v));
    return 0;
}

static int eval(jeval_t *ev, const jnode_t *n, jv_t *out) {
    if (jeval_count_step(ev, n)) return -1;
    jv_t a, b;
    switch (n->kind) {
    case JN_CONST: *out = n->value; return 0;
    case JN_NAME: *out = lookup(ev, n->name); return 0;
    case JN_ATTR: return eval_attr(ev, n, out);
    case JN_ITEM: return eval(ev, n->a, &a) || eval(ev, n->b, &b) || get_item(ev, n, a, b, out) ? -1 : 0;
    case JN_SLICE: return eval_slice(ev, n, out);
    case JN_LIST: case JN_TUPLE: case JN_DICT: return eval_collection(ev, n, out);
    case JN_NOT: case JN_NEG: case JN_POS: return eval_unary(ev, n, out);
    case JN_BINOP: return eval(ev, n->a, &a) || eval(ev, n->b, &b) || binop(ev, n, a, b, out) ? -1 : 0;
    case JN_AND: case JN_OR:
        if (eval(ev, n->a, &a)) return -1;
        if (jv_truthy(a) == (n->kind == JN_OR)) { *out = a; return 0; }
        return eval(ev, n->b, out);
    case JN_COMPARE: return eval_compare(ev, n, out);
    case JN_COND:
        if (eval(ev, n->a, &a)) return -1;
        if (jv_truthy(a)) return eval(ev, n->b, out);
        if (n->c) return eval(ev, n->c, out);
        *out = jv_undef(NULL);
        return 0;
    case JN_FILTER: case JN_TEST: case JN_METHOD:
        if (eval(ev, n->a, &a)) return -1;
        if (n->kind == JN_METHOD && a.k == JV_UNDEF) return undefined_error(ev, n->a, a);
        return eval_builtin(ev, n, n->kind == JN_FILTER ? JB_FILTER : n->kind == JN_TEST ? JB_TEST : JB_METHOD, a, out);
    case JN_CALL: return eval_builtin(ev, n, JB_GLOBAL, jv_undef(NULL), out);
    default: return jeval_fail(ev, n, "internal error: statement in an expression");
    }
}

/* ------------------------------------------------------------------ statements */

static int exec(jeval_t *ev, const jnode_t *n);

static int exec_body(jeval_t *ev, const jnode_t *body) {
    for (int i = 0; i < body->n_args; i++) {
        int rc = exec(ev, body->args[i]);
        if (rc) return rc;
    }
    return FLOW_OK;
}

/* The items a for loop walks: a list's items, a dict's keys, a string's characters. */
static int iterable_items(jeval_t *ev, const jnode_t *at, jv_t v, jlist_t **out) {
    jlist_t *l = NULL;
    if (v.k == JV_LIST) { *out = (jlist_t *)v.u.l; return 0; }
    if (v.k == JV_UNDEF) l = jlist_new(ev->a, 0);
    else if (v.k == JV_DICT) {
        if ((l = jlist_new(ev->a, v.u.d->n)))
            for (size_t i = 0; i < v.u.d->n; i++) l->it[i] = jv_strv(v.u.d->keys[i]);
    } else if (v.k == JV_STR) {
        const jstr_t *s = v.u.s;
        if ((l = jlist_new(ev->a, ju_count(s->p, s->len))))
            for (size_t at_b = 0, i = 0; at_b < s->len; i++) {
                size_t next = ju_next(s->p, s->len, at_b);
                const jstr_t *c = jstr_new(ev->a, s->p + at_b, next - at_b);
                if (!c) return jeval_oom(ev, at);
                l->it[i] = jv_strv(c);
                at_b = next;
            }
    } else {
        return jeval_fail(ev, at, "cannot iterate over a value of type %s", jv_kind_name(v));
    }
    if (!l) return jeval_oom(ev, at);
    *out = l;
    return 0;
}

static int bind_targets(jeval_t *ev, const jnode_t *n, jv_t item) {
    if (n->n_targets == 1) return assign(ev, n, n->targets[0], item);
    if (item.k != JV_LIST || item.u.l->n != (size_t)n->n_targets)
        return jeval_fail(ev, n, "cannot unpack a %s into %d loop variables", jv_kind_name(item), n->n_targets);
    for (int i = 0; i < n->n_targets; i++)
        if (assign(ev, n, n->targets[i], item.u.l->it[i])) return -1;
    return 0;
}

/* The loop filter (for x in xs if cond) applied up front: loop.length counts what passes. */
static int filter_items(jeval_t *ev, const jnode_t *n, jlist_t *all, jlist_t **out) {
    jlist_t *kept = jlist_new(ev->a, all->n);
    if (!kept) return jeval_oom(ev, n);
    size_t k = 0;
    for (size_t i = 0; i < all->n; i++) {
        jv_t c;
        if (bind_targets(ev, n, all->it[i]) || eval(ev, n->d, &c)) return -1;
        if (jv_truthy(c)) kept->it[k++] = all->it[i];
    }
    kept->n = k;
    *out = kept;
    return 0;
}

static int run_loop(jeval_t *ev, const jnode_t *n, jlist_t *items) {
    if (n->d && filter_items(ev, n, items, &items)) return FLOW_ERROR;
    jloop_t *lp = jarena_alloc(ev->a, sizeof *lp);
    if (!lp) return jeval_oom(ev, n);
    lp->length = (int64_t)items->n;
    jv_t loopv = {.k = JV_LOOP};
    loopv.u.lp = lp;
    const jstr_t *loop_name = jstr_new(ev->a, "loop", 4);
    if (!loop_name || assign(ev, n, loop_name, loopv)) return jeval_oom(ev, n);
    for (size_t i = 0; i < items->n; i++) {
        if (jeval_count_step(ev, n)) return FLOW_ERROR;
        lp->index0 = (int64_t)i;
        lp->has_prev = i > 0, lp->has_next = i + 1 < items->n;
        if (lp->has_prev) lp->prev = items->it[i - 1];
        if (lp->has_next) lp->next = items->it[i + 1];
        if (bind_targets(ev, n, items->it[i])) return FLOW_ERROR;
        int rc = exec_body(ev, n->b);
        if (rc == FLOW_ERROR) return rc;
        if (rc == FLOW_BREAK) break;
    }
    return items->n == 0 && n->c ? exec_body(ev, n->c) : FLOW_OK;
}

static int exec_for(jeval_t *ev, const jnode_t *n) {
    jv_t seq;
    jlist_t *items = NULL;
    if (eval(ev, n->a, &seq) || iterable_items(ev, n->a, seq, &items)) return FLOW_ERROR;
    if (push_frame(ev, n)) return FLOW_ERROR;
    int rc = run_loop(ev, n, items);
    ev->n_frames--;
    if (rc == FLOW_OK && over_memory(ev)) return jeval_oom(ev, n);
    return rc == FLOW_ERROR ? FLOW_ERROR : FLOW_OK;
}

static int exec_set(jeval_t *ev, const jnode_t *n) {
    jv_t v;
    if (n->kind == JN_SET_BLOCK) {   /* capture the body's output */
        strbuf_t capture = {0}, *saved = ev->out;
        sb_str(&capture, "");
        ev->out = &capture;
        int rc = exec_body(ev, n->b);
        ev->out = saved;
        if (rc == FLOW_OK) rc = jeval_take_str(ev, n, &capture, &v);
        sb_free(&capture);
        if (rc) return rc;
    } else if (eval(ev, n->a, &v)) {
        return FLOW_ERROR;
    }
    if (!n->name2) return assign(ev, n, n->name, v);
    jv_t ns = lookup(ev, n->name);
    if (ns.k != JV_NS)
        return jeval_fail(ev, n, "cannot set attribute '%s' of '%s': only a namespace() has settable attributes",
                          n->name2->p, n->name->p);
    return jdict_set(ev->a, ns.u.d, n->name2, v) ? jeval_oom(ev, n) : FLOW_OK;
}

static int exec(jeval_t *ev, const jnode_t *n) {
    if (jeval_count_step(ev, n)) return FLOW_ERROR;
    jv_t v;
    switch (n->kind) {
    case JN_BODY: return exec_body(ev, n);
    case JN_TEXT: sb_add(ev->out, n->name->p, n->name->len); break;
    case JN_OUTPUT:
        if (eval(ev, n->a, &v) || jeval_charge(ev, n, size_units(v))) return FLOW_ERROR;
        if (jv_str(ev->out, v)) return jeval_fail(ev, n, "value nested too deeply to print");
        break;
    case JN_IF:
        if (eval(ev, n->a, &v)) return FLOW_ERROR;
        if (jv_truthy(v)) return exec_body(ev, n->b);
        if (n->c) return n->c->kind == JN_IF ? exec(ev, n->c) : exec_body(ev, n->c);
        break;
    case JN_FOR: return exec_for(ev, n);
    case JN_SET: case JN_SET_BLOCK: return exec_set(ev, n);
    case JN_BREAK: return FLOW_BREAK;
    case JN_CONTINUE: return FLOW_CONTINUE;
    default: return jeval_fail(ev, n, "internal error: expression as a statement");
    }
    return over_memory(ev) ? jeval_oom(ev, n) : FLOW_OK;
}

int jeval_run(const jnode_t *root, jarena_t *a, jdict_t *vars, uint64_t max_steps, size_t max_memory, strbuf_t *out,
              spex_err_t *err) {
    jeval_t ev = {.a = a, .out = out, .max_steps = max_steps, .max_memory = max_memory, .err = err};
    ev.frames[ev.n_frames++] = vars;
    if (push_frame(&ev, root)) return -1;   /* the template's own top-level variables */
    int rc = exec_body(&ev, root);
    return rc == FLOW_ERROR ? -1 : 0;
}
