/* jinja_parse.c - tokens -> AST (jinja_internal.h), by recursive descent with
 * Jinja2's own precedence (parser.py): conditional < or < and < not <
 * comparisons (in, not in) < + - < ~ < * / // % < ** < unary - + < primary
 * with its postfixes (.attr, [index], [a:b:c], calls), then filters and tests,
 * which therefore bind tighter than any operator ('a' + x | trim is
 * 'a' + (x | trim)).
 *
 * Statements: if/elif/else, for (with else, a loop filter and tuple targets),
 * set (a name, a namespace attribute, or a block), break, continue, and
 * transformers' generation block. Everything else is refused here, with its
 * position: unknown or unsupported statements, filters, tests, methods and
 * functions, so a template that parses is one the evaluator can run. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "coordinator/serve/jinja_internal.h"

typedef struct parser {
    const jtoks_t *tk;
    size_t i;
    jarena_t *a;
    int depth, max_depth, loops;
    char *msg; size_t msg_len;
} parser_t;

static const jtok_t *cur(parser_t *p) { return &p->tk->t[p->i]; }
static const jtok_t *peek(parser_t *p, size_t k) {
    size_t j = p->i + k < p->tk->n ? p->i + k : p->tk->n - 1;
    return &p->tk->t[j];
}
static const jtok_t *advance(parser_t *p) {
    const jtok_t *t = cur(p);
    if (p->i + 1 < p->tk->n) p->i++;
    return t;
}
static bool tok_is(const jtok_t *t, jtok_kind_t k, const char *s) {
    return t->kind == k && t->len == strlen(s) && !memcmp(t->p, s, t->len);
}
static bool is_op(parser_t *p, const char *s) { return tok_is(cur(p), JT_OP, s); }
static bool is_kw(parser_t *p, const char *s) { return tok_is(cur(p), JT_NAME, s); }

static void describe(const jtok_t *t, char *out, size_t len) {
    switch (t->kind) {
    case JT_EOF: snprintf(out, len, "end of template"); break;
    case JT_TEXT: snprintf(out, len, "template text"); break;
    case JT_BLOCK_END: snprintf(out, len, "end of block '%%}'"); break;
    case JT_VAR_END: snprintf(out, len, "'}}'"); break;
    case JT_BLOCK_BEGIN: snprintf(out, len, "'{%%'"); break;
    case JT_VAR_BEGIN: snprintf(out, len, "'{{'"); break;
    case JT_STRING: snprintf(out, len, "a string"); break;
    default: snprintf(out, len, "'%.*s'", (int)(t->len > 40 ? 40 : t->len), t->p);
    }
}

static void *fail(parser_t *p, const jtok_t *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void *fail(parser_t *p, const jtok_t *t, const char *fmt, ...) {
    if (p->msg[0]) return NULL;   /* keep the first error */
    int n = snprintf(p->msg, p->msg_len, "%d:%d: ", t->line, t->col);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < p->msg_len) vsnprintf(p->msg + n, p->msg_len - (size_t)n, fmt, ap);
    va_end(ap);
    return NULL;
}

static void *unexpected(parser_t *p, const char *wanted) {
    char what[64];
    describe(cur(p), what, sizeof what);
    return fail(p, cur(p), "expected %s, found %s", wanted, what);
}

static jnode_t *node(parser_t *p, jnode_kind_t kind, const jtok_t *at) {
    jnode_t *n = jarena_alloc(p->a, sizeof *n);
    if (!n) return fail(p, at, "out of memory");
    n->kind = kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

static const jstr_t *tok_str(parser_t *p, const jtok_t *t) {
    const jstr_t *s = jstr_new(p->a, t->p, t->len);
    return s ? s : fail(p, t, "out of memory");
}

static bool expect_op(parser_t *p, const char *s) {
    if (is_op(p, s)) { advance(p); return true; }
    char want[16];
    snprintf(want, sizeof want, "'%s'", s);
    unexpected(p, want);
    return false;
}

static bool expect_end(parser_t *p) {
    if (cur(p)->kind == JT_BLOCK_END) { advance(p); return true; }
    unexpected(p, "end of block '%}'");
    return false;
}

/* A growable node array in the arena. */
typedef struct nodes { jnode_t **v; int n, cap; } nodes_t;
static bool push(parser_t *p, nodes_t *ns, jnode_t *n) {
    if (!n) return false;
    if (ns->n == ns->cap) {
        int cap = ns->cap ? ns->cap * 2 : 4;
        jnode_t **v = jarena_alloc(p->a, (size_t)cap * sizeof *v);
        if (!v) { fail(p, cur(p), "out of memory"); return false; }
        if (ns->n) memcpy(v, ns->v, (size_t)ns->n * sizeof *v);
        ns->v = v, ns->cap = cap;
    }
    ns->v[ns->n++] = n;
    return true;
}

/* ------------------------------------------------------------------ expressions */

static jnode_t *parse_expression(parser_t *p, bool with_cond);
static jnode_t *parse_unary(parser_t *p, bool with_filter);

static bool enter(parser_t *p) {
    if (++p->depth <= p->max_depth) return true;
    fail(p, cur(p), "nesting deeper than %d", p->max_depth);
    return false;
}

/* (args) of a call, filter or test: positional, then name=value. */
static bool parse_args(parser_t *p, jnode_t *n) {
    nodes_t pos = {0}, kw = {0};
    const jstr_t *names[32];
    advance(p);   /* ( */
    while (!is_op(p, ")")) {
        if (pos.n + kw.n && !expect_op(p, ",")) return false;
        if (is_op(p, ")")) break;
        if (is_op(p, "*") || is_op(p, "**")) { fail(p, cur(p), "unsupported: *args / **kwargs in a call"); return false; }
        if (cur(p)->kind == JT_NAME && tok_is(peek(p, 1), JT_OP, "=")) {
            if (kw.n == 32) { fail(p, cur(p), "too many keyword arguments"); return false; }
            if (!(names[kw.n] = tok_str(p, advance(p)))) return false;
            advance(p);
            if (!push(p, &kw, parse_expression(p, true))) return false;
        } else {
            if (kw.n) { fail(p, cur(p), "positional argument after a keyword argument"); return false; }
            if (!push(p, &pos, parse_expression(p, true))) return false;
        }
    }
    advance(p);   /* ) */
    n->args = pos.v, n->n_args = pos.n, n->kwargs = kw.v, n->n_kwargs = kw.n;
    if (kw.n) {
        n->kwnames = jarena_alloc(p->a, (size_t)kw.n * sizeof *n->kwnames);
        if (!n->kwnames) { fail(p, cur(p), "out of memory"); return false; }
        memcpy(n->kwnames, names, (size_t)kw.n * sizeof *names);
    }
    return true;
}

static jnode_t *builtin_node(parser_t *p, jnode_kind_t kind, jb_kind_t bk, const jtok_t *name, jnode_t *obj) {
    static const char *what[] = {"filter", "test", "method", "function"};
    int id = jb_lookup(bk, name->p, name->len);
    if (id < 0)
        return fail(p, name, "unsupported %s '%.*s' (supported: %s)", what[bk], (int)name->len, name->p, jb_names(bk));
    jnode_t *n = node(p, kind, name);
    if (!n) return NULL;
    n->op = id;
    n->a = obj;
    n->name = tok_str(p, name);
    return n->name ? n : NULL;
}

static jnode_t *parse_subscript(parser_t *p, jnode_t *obj) {
    const jtok_t *at = advance(p);   /* [ */
    jnode_t *parts[3] = {0};
    int k = 0;
    bool slice = false;
    for (;;) {
        if (!is_op(p, ":") && !is_op(p, "]") && !(parts[k] = parse_expression(p, true))) return NULL;
        if (is_op(p, ":") && k < 2) { advance(p); k++; slice = true; continue; }
        break;
    }
    if (!expect_op(p, "]")) return NULL;
    jnode_t *n = node(p, slice ? JN_SLICE : JN_ITEM, at);
    if (!n) return NULL;
    n->a = obj;
    n->b = parts[0], n->c = parts[1], n->d = parts[2];
    if (!slice && !parts[0]) return fail(p, at, "empty subscript");
    return n;
}

static jnode_t *parse_postfix(parser_t *p, jnode_t *n) {
    int depth = p->depth;
    while (n) {
        if ((is_op(p, ".") || is_op(p, "[") || is_op(p, "(")) && !enter(p)) return NULL;
        if (is_op(p, ".")) {
            const jtok_t *dot = advance(p);
            const jtok_t *name = cur(p);
            if (name->kind == JT_INT) {   /* x.0 is x[0] */
                jnode_t *it = node(p, JN_ITEM, dot), *k = node(p, JN_CONST, name);
                if (!it || !k) return NULL;
                k->value = jv_int(advance(p)->ival);
                it->a = n, it->b = k;
                n = it;
                continue;
            }
            if (name->kind != JT_NAME) return unexpected(p, "an attribute name");
            advance(p);
            if (is_op(p, "(")) {
                jnode_t *m = builtin_node(p, JN_METHOD, JB_METHOD, name, n);
                if (!m || !parse_args(p, m)) return NULL;
                n = m;
            } else {
                jnode_t *at = node(p, JN_ATTR, name);
                if (!at || !(at->name = tok_str(p, name))) return NULL;
                at->a = n;
                n = at;
            }
        } else if (is_op(p, "[")) {
            n = parse_subscript(p, n);
        } else if (is_op(p, "(")) {
            if (n->kind != JN_NAME) return fail(p, cur(p), "only functions (%s) and methods can be called", jb_names(JB_GLOBAL));
            const jtok_t name = {.kind = JT_NAME, .line = n->line, .col = n->col, .p = n->name->p, .len = n->name->len};
            jnode_t *c = builtin_node(p, JN_CALL, JB_GLOBAL, &name, NULL);
            if (!c || !parse_args(p, c)) return NULL;
            n = c;
        } else {
            break;
        }
    }
    p->depth = depth;
    return n;
}

static bool test_takes_bare_arg(parser_t *p) {
    const jtok_t *t = cur(p);
    if (t->kind == JT_NAME)
        return !tok_is(t, JT_NAME, "else") && !tok_is(t, JT_NAME, "or") && !tok_is(t, JT_NAME, "and") &&
               !tok_is(t, JT_NAME, "if");
    return t->kind == JT_STRING || t->kind == JT_INT || t->kind == JT_FLOAT || is_op(p, "(") || is_op(p, "[") ||
           is_op(p, "{");
}

static jnode_t *parse_filters(parser_t *p, jnode_t *n) {
    int depth = p->depth;
    while (n) {
        if ((is_op(p, "|") || is_kw(p, "is")) && !enter(p)) return NULL;
        if (is_op(p, "|")) {
            advance(p);
            if (cur(p)->kind != JT_NAME) return unexpected(p, "a filter name");
            jnode_t *f = builtin_node(p, JN_FILTER, JB_FILTER, advance(p), n);
            if (!f) return NULL;
            if (is_op(p, "(") && !parse_args(p, f)) return NULL;
            n = f;
        } else if (is_kw(p, "is")) {
            advance(p);
            bool negated = is_kw(p, "not");
            if (negated) advance(p);
            if (cur(p)->kind != JT_NAME) return unexpected(p, "a test name");
            jnode_t *t = builtin_node(p, JN_TEST, JB_TEST, advance(p), n);
            if (!t) return NULL;
            if (is_op(p, "(")) {
                if (!parse_args(p, t)) return NULL;
            } else if (test_takes_bare_arg(p)) {
                nodes_t one = {0};
                jnode_t *arg = parse_postfix(p, parse_unary(p, false));
                if (!push(p, &one, arg)) return NULL;
                t->args = one.v, t->n_args = 1;
            }
            jnode_t *neg = negated ? node(p, JN_NOT, cur(p)) : t;
            if (!neg) return NULL;
            if (negated) neg->a = t;
            n = neg;
        } else {
            break;
        }
    }
    p->depth = depth;
    return n;
}

static jnode_t *parse_collection(parser_t *p, const char *close, jnode_kind_t kind) {
    jnode_t *n = node(p, kind, advance(p));
    if (!n) return NULL;
    nodes_t items = {0}, vals = {0};
    while (!is_op(p, close)) {
        if (items.n && !expect_op(p, ",")) return NULL;
        if (is_op(p, close)) break;
        if (!push(p, &items, parse_expression(p, true))) return NULL;
        if (kind == JN_DICT && (!expect_op(p, ":") || !push(p, &vals, parse_expression(p, true)))) return NULL;
    }
    advance(p);
    n->args = items.v, n->n_args = items.n, n->kwargs = vals.v, n->n_kwargs = vals.n;
    return n;
}

/* ( expr ) or a tuple ( a, b ) */
static jnode_t *parse_paren(parser_t *p) {
    const jtok_t *at = advance(p);
    nodes_t items = {0};
    bool comma = false;
    while (!is_op(p, ")")) {
        if (items.n) { if (!expect_op(p, ",")) return NULL; comma = true; }
        if (is_op(p, ")")) break;
        if (!push(p, &items, parse_expression(p, true))) return NULL;
    }
    advance(p);
    if (items.n == 1 && !comma) return items.v[0];
    jnode_t *n = node(p, JN_TUPLE, at);
    if (n) n->args = items.v, n->n_args = items.n;
    return n;
}

static jnode_t *parse_primary(parser_t *p) {
    const jtok_t *t = cur(p);
    jnode_t *n;
    switch (t->kind) {
    case JT_NAME:
        if (!(n = node(p, JN_CONST, advance(p)))) return NULL;
        if (tok_is(t, JT_NAME, "true") || tok_is(t, JT_NAME, "True")) n->value = jv_bool(true);
        else if (tok_is(t, JT_NAME, "false") || tok_is(t, JT_NAME, "False")) n->value = jv_bool(false);
        else if (tok_is(t, JT_NAME, "none") || tok_is(t, JT_NAME, "None")) n->value = jv_none();
        else { n->kind = JN_NAME; if (!(n->name = tok_str(p, t))) return NULL; }
        return n;
    case JT_STRING: {
        if (!(n = node(p, JN_CONST, t))) return NULL;
        strbuf_t b = {0};   /* adjacent literals concatenate */
        sb_str(&b, "");
        while (cur(p)->kind == JT_STRING) { sb_add(&b, cur(p)->p, cur(p)->len); advance(p); }
        const jstr_t *s = b.oom ? NULL : jstr_new(p->a, b.p, b.n);
        sb_free(&b);
        if (!s) return fail(p, t, "out of memory");
        n->value = jv_strv(s);
        return n;
    }
    case JT_INT: case JT_FLOAT:
        if (!(n = node(p, JN_CONST, advance(p)))) return NULL;
        n->value = t->kind == JT_INT ? jv_int(t->ival) : jv_float(t->fval);
        return n;
    default:
        if (is_op(p, "(")) return parse_paren(p);
        if (is_op(p, "[")) return parse_collection(p, "]", JN_LIST);
        if (is_op(p, "{")) return parse_collection(p, "}", JN_DICT);
        return unexpected(p, "an expression");
    }
}

static jnode_t *parse_unary(parser_t *p, bool with_filter) {
    if (!enter(p)) return NULL;
    jnode_t *n;
    if (is_op(p, "-") || is_op(p, "+")) {
        const jtok_t *t = advance(p);
        if ((n = node(p, t->p[0] == '-' ? JN_NEG : JN_POS, t)) && !(n->a = parse_unary(p, false))) n = NULL;
    } else {
        n = parse_primary(p);
    }
    n = parse_postfix(p, n);
    if (with_filter) n = parse_filters(p, n);
    p->depth--;
    return n;
}

typedef struct binop { const char *tok; jop_t op; } binop_t;

/* One left-associative level: operand (op operand)*. */
/* One left-associative level: operand (op operand)*. Each operator deepens the
 * tree (a + b + c is (a + b) + c), so each counts against the nesting limit:
 * the evaluator's recursion is bounded by the parser's. */
static jnode_t *parse_level(parser_t *p, jnode_t *(*operand)(parser_t *), const binop_t *ops) {
    int depth = p->depth;
    jnode_t *left = operand(p);
    while (left) {
        const binop_t *o = ops;
        while (o->tok && !is_op(p, o->tok)) o++;
        if (!o->tok) break;
        jnode_t *n = enter(p) ? node(p, JN_BINOP, advance(p)) : NULL;
        if (!n) return NULL;
        n->op = o->op;
        n->a = left;
        if (!(n->b = operand(p))) return NULL;
        left = n;
    }
    p->depth = depth;
    return left;
}

static jnode_t *parse_unary_filtered(parser_t *p) { return parse_unary(p, true); }
static jnode_t *parse_pow(parser_t *p) {
    static const binop_t ops[] = {{"**", JO_POW}, {NULL, 0}};
    return parse_level(p, parse_unary_filtered, ops);
}
static jnode_t *parse_math2(parser_t *p) {
    static const binop_t ops[] = {{"//", JO_FLOORDIV}, {"*", JO_MUL}, {"/", JO_DIV}, {"%", JO_MOD}, {NULL, 0}};
    return parse_level(p, parse_pow, ops);
}
static jnode_t *parse_concat(parser_t *p) {
    static const binop_t ops[] = {{"~", JO_CONCAT}, {NULL, 0}};
    return parse_level(p, parse_math2, ops);
}
static jnode_t *parse_math1(parser_t *p) {
    static const binop_t ops[] = {{"+", JO_ADD}, {"-", JO_SUB}, {NULL, 0}};
    return parse_level(p, parse_concat, ops);
}

static int compare_op(parser_t *p) {
    static const binop_t ops[] = {{"==", JO_EQ}, {"!=", JO_NE}, {"<=", JO_LE}, {">=", JO_GE}, {"<", JO_LT}, {">", JO_GT}};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++)
        if (is_op(p, ops[k].tok)) { advance(p); return ops[k].op; }
    if (is_kw(p, "in")) { advance(p); return JO_IN; }
    if (is_kw(p, "not") && tok_is(peek(p, 1), JT_NAME, "in")) { advance(p); advance(p); return JO_NOTIN; }
    return -1;
}

static jnode_t *parse_compare(parser_t *p) {
    const jtok_t *at = cur(p);
    jnode_t *first = parse_math1(p);
    if (!first) return NULL;
    nodes_t rest = {0};
    int ops[16], op;
    while ((op = compare_op(p)) >= 0) {
        if (rest.n == 16) return fail(p, cur(p), "too many chained comparisons");
        ops[rest.n] = op;
        if (!push(p, &rest, parse_math1(p))) return NULL;
    }
    if (!rest.n) return first;
    jnode_t *n = node(p, JN_COMPARE, at);
    if (!n || !(n->ops = jarena_alloc(p->a, (size_t)rest.n * sizeof(int)))) return fail(p, at, "out of memory");
    memcpy(n->ops, ops, (size_t)rest.n * sizeof(int));
    n->a = first, n->args = rest.v, n->n_args = rest.n;
    return n;
}

static jnode_t *parse_not(parser_t *p) {
    if (!is_kw(p, "not")) return parse_compare(p);
    if (!enter(p)) return NULL;
    jnode_t *n = node(p, JN_NOT, advance(p));
    if (n && !(n->a = parse_not(p))) n = NULL;
    p->depth--;
    return n;
}

static jnode_t *parse_logic(parser_t *p, const char *kw, jnode_kind_t kind, jnode_t *(*operand)(parser_t *)) {
    int depth = p->depth;
    jnode_t *left = operand(p);
    while (left && is_kw(p, kw)) {
        jnode_t *n = enter(p) ? node(p, kind, advance(p)) : NULL;
        if (!n) return NULL;
        n->a = left;
        if (!(n->b = operand(p))) return NULL;
        left = n;
    }
    p->depth = depth;
    return left;
}
static jnode_t *parse_and(parser_t *p) { return parse_logic(p, "and", JN_AND, parse_not); }
static jnode_t *parse_or(parser_t *p) { return parse_logic(p, "or", JN_OR, parse_and); }

static jnode_t *parse_expression(parser_t *p, bool with_cond) {
    if (!enter(p)) return NULL;
    jnode_t *n = parse_or(p);
    while (n && with_cond && is_kw(p, "if")) {
        jnode_t *c = node(p, JN_COND, advance(p));
        if (!c || !(c->a = parse_or(p))) return NULL;
        c->b = n;   /* a = condition, b = value if true, c = value if false (undefined when absent) */
        if (is_kw(p, "else")) { advance(p); if (!(c->c = parse_expression(p, true))) return NULL; }
        n = c;
    }
    p->depth--;
    return n;
}

/* expr or a, b (a tuple), as {{ }} and set accept. */
static jnode_t *parse_tuple_expr(parser_t *p) {
    const jtok_t *at = cur(p);
    jnode_t *first = parse_expression(p, true);
    if (!first || !is_op(p, ",")) return first;
    nodes_t items = {0};
    push(p, &items, first);
    while (is_op(p, ",")) {
        advance(p);
        if (cur(p)->kind == JT_BLOCK_END || cur(p)->kind == JT_VAR_END) break;
        if (!push(p, &items, parse_expression(p, true))) return NULL;
    }
    jnode_t *n = node(p, JN_TUPLE, at);
    if (n) n->args = items.v, n->n_args = items.n;
    return n;
}

/* ------------------------------------------------------------------ statements */

static jnode_t *parse_body(parser_t *p, const char *const *ends);

static jnode_t *parse_if_body(parser_t *p, const jtok_t *kw, const char *const *ends, const char *const *endif);

static const char *const UNSUPPORTED_STMTS[] = {"macro", "call", "filter", "include", "import", "from", "extends",
                                                "block", "with", "raw", "autoescape", "do", "trans", "print", NULL};

static bool in_list(const jtok_t *t, const char *const *names) {
    for (; names && *names; names++)
        if (tok_is(t, JT_NAME, *names)) return true;
    return false;
}

static jnode_t *parse_if(parser_t *p, const jtok_t *kw) {
    static const char *const ends[] = {"elif", "else", "endif", NULL}, *const endif[] = {"endif", NULL};
    if (!enter(p)) return NULL;   /* an elif is an if nested in the else */
    jnode_t *n = parse_if_body(p, kw, ends, endif);
    p->depth--;
    return n;
}

static jnode_t *parse_if_body(parser_t *p, const jtok_t *kw, const char *const *ends, const char *const *endif) {
    jnode_t *n = node(p, JN_IF, kw);
    if (!n || !(n->a = parse_expression(p, true)) || !expect_end(p) || !(n->b = parse_body(p, ends))) return NULL;
    const jtok_t *next = advance(p);
    if (tok_is(next, JT_NAME, "elif")) {
        n->c = parse_if(p, next);
        return n->c ? n : NULL;
    }
    if (tok_is(next, JT_NAME, "else")) {
        if (!expect_end(p) || !(n->c = parse_body(p, endif))) return NULL;
        advance(p);
    }
    return expect_end(p) ? n : NULL;
}

static jnode_t *parse_for(parser_t *p, const jtok_t *kw) {
    static const char *const ends[] = {"else", "endfor", NULL}, *const endfor[] = {"endfor", NULL};
    jnode_t *n = node(p, JN_FOR, kw);
    const jstr_t *targets[8];
    int nt = 0;
    bool paren = is_op(p, "(");
    if (paren) advance(p);
    do {
        if (nt && !expect_op(p, ",")) return NULL;
        if (cur(p)->kind != JT_NAME) return unexpected(p, "a loop variable");
        if (nt == 8) return fail(p, cur(p), "too many loop variables");
        if (!(targets[nt++] = tok_str(p, advance(p)))) return NULL;
    } while (is_op(p, ","));
    if (paren && !expect_op(p, ")")) return NULL;
    if (!is_kw(p, "in")) return unexpected(p, "'in'");
    advance(p);
    if (!n || !(n->targets = jarena_alloc(p->a, (size_t)nt * sizeof *targets))) return fail(p, kw, "out of memory");
    memcpy(n->targets, targets, (size_t)nt * sizeof *targets);
    n->n_targets = nt;
    if (!(n->a = parse_expression(p, false))) return NULL;
    if (is_kw(p, "if")) { advance(p); if (!(n->d = parse_expression(p, true))) return NULL; }
    if (is_kw(p, "recursive")) return fail(p, cur(p), "unsupported: recursive loops");
    if (!expect_end(p)) return NULL;
    p->loops++;
    n->b = parse_body(p, ends);
    p->loops--;
    if (!n->b) return NULL;
    if (tok_is(advance(p), JT_NAME, "else")) {
        if (!expect_end(p) || !(n->c = parse_body(p, endfor))) return NULL;
        advance(p);
    }
    return expect_end(p) ? n : NULL;
}

static jnode_t *parse_set(parser_t *p, const jtok_t *kw) {
    static const char *const endset[] = {"endset", NULL};
    if (cur(p)->kind != JT_NAME) return unexpected(p, "a variable name");
    jnode_t *n = node(p, JN_SET, kw);
    if (!n || !(n->name = tok_str(p, advance(p)))) return NULL;
    if (is_op(p, ".")) {
        advance(p);
        if (cur(p)->kind != JT_NAME) return unexpected(p, "an attribute name");
        if (!(n->name2 = tok_str(p, advance(p)))) return NULL;
    }
    if (is_op(p, ",")) return fail(p, cur(p), "unsupported: assigning to several names in one set");
    if (cur(p)->kind == JT_BLOCK_END && !n->name2) {   /* {% set x %}...{% endset %} */
        advance(p);
        n->kind = JN_SET_BLOCK;
        if (!(n->b = parse_body(p, endset))) return NULL;
        advance(p);
        return expect_end(p) ? n : NULL;
    }
    if (!expect_op(p, "=") || !(n->a = parse_tuple_expr(p))) return NULL;
    return expect_end(p) ? n : NULL;
}

static jnode_t *parse_statement(parser_t *p) {
    static const char *const endgen[] = {"endgeneration", NULL};
    const jtok_t *kw = cur(p);
    if (kw->kind != JT_NAME) return unexpected(p, "a statement name");
    advance(p);
    if (tok_is(kw, JT_NAME, "if")) return parse_if(p, kw);
    if (tok_is(kw, JT_NAME, "for")) return parse_for(p, kw);
    if (tok_is(kw, JT_NAME, "set")) return parse_set(p, kw);
    if (tok_is(kw, JT_NAME, "break") || tok_is(kw, JT_NAME, "continue")) {
        if (!p->loops) return fail(p, kw, "'%.*s' outside a loop", (int)kw->len, kw->p);
        jnode_t *n = node(p, kw->len == 5 ? JN_BREAK : JN_CONTINUE, kw);
        return n && expect_end(p) ? n : NULL;
    }
    if (tok_is(kw, JT_NAME, "generation")) {   /* transformers' AssistantTracker: the body, as is */
        jnode_t *n;
        if (!expect_end(p) || !(n = parse_body(p, endgen))) return NULL;
        advance(p);
        return expect_end(p) ? n : NULL;
    }
    if (in_list(kw, UNSUPPORTED_STMTS))
        return fail(p, kw, "unsupported statement '%.*s' (supported: if, for, set, break, continue, generation)",
                    (int)kw->len, kw->p);
    return fail(p, kw, "unknown statement '%.*s'", (int)kw->len, kw->p);
}

/* Statements until EOF (ends NULL) or a block starting with one of ends, which is left as the current token. */
static jnode_t *parse_body(parser_t *p, const char *const *ends) {
    const jtok_t *start = cur(p);
    if (!enter(p)) return NULL;
    jnode_t *body = node(p, JN_BODY, start);
    nodes_t items = {0};
    for (;;) {
        const jtok_t *t = cur(p);
        if (t->kind == JT_EOF) {
            if (ends) {
                const char *const *last = ends;
                while (last[1]) last++;
                return fail(p, t, "unexpected end of template: missing {%% %s %%}", *last);
            }
            break;
        }
        if (t->kind == JT_TEXT) {
            jnode_t *n = node(p, JN_TEXT, advance(p));
            if (!n || !(n->name = tok_str(p, t)) || !push(p, &items, n)) return NULL;
        } else if (t->kind == JT_VAR_BEGIN) {
            advance(p);
            jnode_t *n = node(p, JN_OUTPUT, t);
            if (!n || !(n->a = parse_tuple_expr(p))) return NULL;
            if (cur(p)->kind != JT_VAR_END) return unexpected(p, "'}}'");
            advance(p);
            if (!push(p, &items, n)) return NULL;
        } else if (t->kind == JT_BLOCK_BEGIN) {
            const jtok_t *kw = peek(p, 1);
            if (in_list(kw, ends)) { advance(p); break; }
            if (kw->kind == JT_NAME && (kw->len > 3 && (!memcmp(kw->p, "end", 3) || tok_is(kw, JT_NAME, "elif") ||
                                                        tok_is(kw, JT_NAME, "else"))))
                return fail(p, kw, "unexpected '%.*s'%s", (int)kw->len, kw->p, ends ? "" : " (nothing to close)");
            if (tok_is(kw, JT_NAME, "else") || tok_is(kw, JT_NAME, "elif"))
                return fail(p, kw, "unexpected '%.*s'", (int)kw->len, kw->p);
            advance(p);
            if (!push(p, &items, parse_statement(p))) return NULL;
        } else {
            return unexpected(p, "template text or a tag");
        }
    }
    p->depth--;
    body->args = items.v, body->n_args = items.n;
    return body;
}

jnode_t *jinja_parse(const jtoks_t *toks, jarena_t *a, int max_depth, char *msg, size_t msg_len) {
    parser_t p = {.tk = toks, .a = a, .max_depth = max_depth, .msg = msg, .msg_len = msg_len};
    msg[0] = '\0';
    jnode_t *root = parse_body(&p, NULL);
    return msg[0] ? NULL : root;   /* an error deep down may not have reached the top as NULL */
}
