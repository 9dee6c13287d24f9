/* jinja_json.c - the tojson filter as transformers defines it: Python's
 * json.dumps(value, ensure_ascii=False, indent=indent, sort_keys=sort_keys),
 * so non-ASCII text is kept, only '"', '\' and control characters are
 * escaped, and the separators are ", " / ": " (or "," / ": " with an indent). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/serve/jinja_internal.h"

static void json_string(strbuf_t *b, const char *p, size_t len) {
    sb_str(b, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        switch (c) {
        case '"': sb_str(b, "\\\""); break;
        case '\\': sb_str(b, "\\\\"); break;
        case '\n': sb_str(b, "\\n"); break;
        case '\r': sb_str(b, "\\r"); break;
        case '\t': sb_str(b, "\\t"); break;
        case '\b': sb_str(b, "\\b"); break;
        case '\f': sb_str(b, "\\f"); break;
        default:
            if (c < 0x20) sb_printf(b, "\\u%04x", c);
            else sb_add(b, &c, 1);
        }
    }
    sb_str(b, "\"");
}

static void newline_indent(strbuf_t *b, int indent, int level) {
    sb_str(b, "\n");
    for (int i = 0; i < indent * level; i++) sb_str(b, " ");
}

typedef struct json_out { strbuf_t *b; int indent; bool sort; char *msg; size_t msg_len; } json_out_t;

static int dump(json_out_t *o, jv_t v, int level);

static int dump_list(json_out_t *o, const jlist_t *l, int level) {
    if (!l->n) { sb_str(o->b, "[]"); return 0; }
    sb_str(o->b, "[");
    for (size_t i = 0; i < l->n; i++) {
        if (i) sb_str(o->b, o->indent >= 0 ? "," : ", ");
        if (o->indent >= 0) newline_indent(o->b, o->indent, level + 1);
        if (dump(o, l->it[i], level + 1)) return -1;
    }
    if (o->indent >= 0) newline_indent(o->b, o->indent, level);
    sb_str(o->b, "]");
    return 0;
}

static int key_order(const jdict_t *d, size_t *order) {
    for (size_t i = 0; i < d->n; i++) order[i] = i;
    for (size_t i = 1; i < d->n; i++)   /* insertion sort: dicts here are small */
        for (size_t j = i; j > 0; j--) {
            const jstr_t *x = d->keys[order[j - 1]], *y = d->keys[order[j]];
            size_t n = x->len < y->len ? x->len : y->len;
            int c = memcmp(x->p, y->p, n);
            if (c < 0 || (c == 0 && x->len <= y->len)) break;
            size_t t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    return 0;
}

static int dump_dict(json_out_t *o, const jdict_t *d, int level) {
    if (!d->n) { sb_str(o->b, "{}"); return 0; }
    size_t *order = malloc(d->n * sizeof *order);
    if (!order) { snprintf(o->msg, o->msg_len, "out of memory"); return -1; }
    key_order(d, order);
    if (!o->sort)
        for (size_t i = 0; i < d->n; i++) order[i] = i;
    sb_str(o->b, "{");
    int rc = 0;
    for (size_t k = 0; k < d->n && !rc; k++) {
        size_t i = order[k];
        if (k) sb_str(o->b, o->indent >= 0 ? "," : ", ");
        if (o->indent >= 0) newline_indent(o->b, o->indent, level + 1);
        json_string(o->b, d->keys[i]->p, d->keys[i]->len);
        sb_str(o->b, ": ");
        rc = dump(o, d->vals[i], level + 1);
    }
    free(order);
    if (rc) return -1;
    if (o->indent >= 0) newline_indent(o->b, o->indent, level);
    sb_str(o->b, "}");
    return 0;
}

static int dump(json_out_t *o, jv_t v, int level) {
    if (level > JV_MAX_DEPTH) { snprintf(o->msg, o->msg_len, "tojson: nesting deeper than %d", JV_MAX_DEPTH); return -1; }
    switch (v.k) {
    case JV_NONE: sb_str(o->b, "null"); return 0;
    case JV_BOOL: sb_str(o->b, v.u.b ? "true" : "false"); return 0;
    case JV_INT: sb_printf(o->b, "%lld", (long long)v.u.i); return 0;
    case JV_FLOAT:
        if (isnan(v.u.f)) sb_str(o->b, "NaN");
        else if (isinf(v.u.f)) sb_str(o->b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else jv_float_repr(o->b, v.u.f);
        return 0;
    case JV_STR: json_string(o->b, v.u.s->p, v.u.s->len); return 0;
    case JV_LIST: return dump_list(o, v.u.l, level);
    case JV_DICT: return dump_dict(o, v.u.d, level);
    default:
        snprintf(o->msg, o->msg_len, "tojson: a value of type %s is not JSON serializable", jv_kind_name(v));
        return -1;
    }
}

int jv_tojson(strbuf_t *b, jv_t v, int indent, bool sort_keys, char *msg, size_t msg_len) {
    json_out_t o = {b, indent, sort_keys, msg, msg_len};
    return dump(&o, v, 0);
}
