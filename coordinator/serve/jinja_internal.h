/* jinja_internal.h - the types shared by the pieces of the Jinja2-subset
 * interpreter (jinja.h is its public face):
 *
 *   jinja_arena.c     bump allocator with a byte budget (every value and AST node lives in one)
 *   jinja_value.c     the value type: undefined/none/bool/int/float/string/list/dict/namespace,
 *                     Python's truthiness, equality, ordering, str() and repr()
 *   jinja_json.c      tojson (Python's json.dumps as transformers calls it) and JSON -> value
 *   jinja_lex.c       template text -> tokens (whitespace control, trim_blocks, lstrip_blocks)
 *   jinja_parse.c     tokens -> AST, rejecting what the subset lacks with line:column
 *   jinja_builtins.c  the names of filters, tests, methods and functions; tests and functions
 *   jinja_filters.c   the filters
 *   jinja_methods.c   the string and dict methods
 *   jinja_eval.c      AST -> output, within a step and memory budget
 *   jinja.c           the public API (jinja.h): compile, render contexts, render
 *
 * Values are immutable except namespaces; they are allocated in the render's
 * arena and die with it, so nothing is reference counted or freed one by one. */
#ifndef SPEX_JINJA_INTERNAL_H
#define SPEX_JINJA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/serve/jinja.h"
#include "core/strbuf.h"

/* ------------------------------------------------------------------ arena */

typedef struct jarena_chunk jarena_chunk_t;
typedef struct jarena {
    jarena_chunk_t *head;
    size_t used, limit;   /* bytes handed out (chunk overhead included), budget */
    bool exhausted;
} jarena_t;

void jarena_init(jarena_t *a, size_t limit);
void *jarena_alloc(jarena_t *a, size_t n);   /* zeroed, 16-aligned; NULL past the budget */
void jarena_free(jarena_t *a);

/* ------------------------------------------------------------------ values */

typedef enum jv_kind {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT, JV_NS, JV_LOOP
} jv_kind_t;

typedef struct jstr { size_t len; char p[]; } jstr_t;    /* immutable, NUL-terminated too */
typedef struct jlist jlist_t;
typedef struct jdict jdict_t;
typedef struct jloop jloop_t;

typedef struct jv {
    jv_kind_t k;
    union {
        bool b;
        int64_t i;
        double f;
        const jstr_t *s;    /* JV_STR; JV_UNDEF: the name that was missing, or NULL */
        const jlist_t *l;
        jdict_t *d;         /* JV_DICT (immutable once built) and JV_NS (mutable) */
        const jloop_t *lp;
    } u;
} jv_t;

struct jlist { size_t n; bool tuple; jv_t it[]; };
struct jdict { size_t n, cap; const jstr_t **keys; jv_t *vals; };
struct jloop { int64_t index0, length; jv_t prev, next; bool has_prev, has_next; };

/* JSON-ish nesting deeper than this (repr, tojson, equality) is an error, not a stack overflow. */
#define JV_MAX_DEPTH 200

static inline jv_t jv_undef(const jstr_t *name) { jv_t v = {.k = JV_UNDEF}; v.u.s = name; return v; }
static inline jv_t jv_none(void) { return (jv_t){.k = JV_NONE}; }
static inline jv_t jv_bool(bool b) { jv_t v = {.k = JV_BOOL}; v.u.b = b; return v; }
static inline jv_t jv_int(int64_t i) { jv_t v = {.k = JV_INT}; v.u.i = i; return v; }
static inline jv_t jv_float(double f) { jv_t v = {.k = JV_FLOAT}; v.u.f = f; return v; }
static inline jv_t jv_strv(const jstr_t *s) { jv_t v = {.k = JV_STR}; v.u.s = s; return v; }
static inline jv_t jv_listv(const jlist_t *l) { jv_t v = {.k = JV_LIST}; v.u.l = l; return v; }
static inline jv_t jv_dictv(jdict_t *d) { jv_t v = {.k = JV_DICT}; v.u.d = d; return v; }

const jstr_t *jstr_new(jarena_t *a, const char *p, size_t len);   /* NULL when out of budget */
jlist_t *jlist_new(jarena_t *a, size_t n);
jdict_t *jdict_new(jarena_t *a, size_t cap);
/* Insert or replace key (dicts keep insertion order). -1 when out of budget. */
int jdict_set(jarena_t *a, jdict_t *d, const jstr_t *key, jv_t v);
/* The value of key, or NULL. */
const jv_t *jdict_get(const jdict_t *d, const char *key, size_t len);
/* d's (key, value) pairs as a list of 2-tuples in insertion order (Python's
 * dict.items()); NULL when out of budget. */
jlist_t *jdict_items(jarena_t *a, const jdict_t *d);

bool jv_truthy(jv_t v);
const char *jv_kind_name(jv_t v);          /* "string", "list", ... for error messages */
bool jv_is_number(jv_t v);                  /* int, float or bool (Python's bool is an int) */
double jv_num(jv_t v);
/* Python's ==. *err set (returns false) when nesting exceeds JV_MAX_DEPTH. */
bool jv_equal(jv_t a, jv_t b, bool *err);
/* Python's <: -1/0/1 in *cmp; -1 return when the types do not order. */
int jv_compare(jv_t a, jv_t b, int *cmp);
/* Append str(v) (Python's, as {{ v }} prints it) or repr(v). -1 when too deep. */
int jv_str(strbuf_t *b, jv_t v);
int jv_repr(strbuf_t *b, jv_t v, int depth);
/* Python's repr of a float, shortest round trip ("1.0", "0.1", "1e+16"). */
void jv_float_repr(strbuf_t *b, double f);

/* UTF-8 helpers: code points are Python's string units. */
size_t ju_count(const char *p, size_t len);                        /* code points */
size_t ju_offset(const char *p, size_t len, size_t cp);            /* byte offset of code point cp */
size_t ju_next(const char *p, size_t len, size_t at);              /* byte after the code point at `at` */
size_t ju_prev(const char *p, size_t at);                          /* start of the code point before `at` */
bool ju_isspace_at(const char *p, size_t len, size_t at, size_t *n);   /* Python's str.isspace() */

/* ------------------------------------------------------------------ JSON */

/* json.dumps(v, ensure_ascii=False, indent=indent (<0: None), sort_keys) into b. -1 with msg. */
int jv_tojson(strbuf_t *b, jv_t v, int indent, bool sort_keys, char *msg, size_t msg_len);

/* ------------------------------------------------------------------ tokens */

typedef enum jtok_kind {
    JT_TEXT, JT_VAR_BEGIN, JT_VAR_END, JT_BLOCK_BEGIN, JT_BLOCK_END,
    JT_NAME, JT_STRING, JT_INT, JT_FLOAT, JT_OP, JT_EOF
} jtok_kind_t;

typedef struct jtok {
    jtok_kind_t kind;
    int line, col;
    const char *p;   /* text, name, operator or decoded string (arena) */
    size_t len;
    int64_t ival;
    double fval;
} jtok_t;

typedef struct jtoks { jtok_t *t; size_t n, cap; } jtoks_t;

/* Tokenize src with transformers' settings (trim_blocks, lstrip_blocks, the
 * trailing newline dropped). Strings live in a. -1 with "L:C: message". */
int jinja_lex(const char *src, size_t len, jarena_t *a, jtoks_t *out, char *msg, size_t msg_len);
void jtoks_free(jtoks_t *t);

/* ------------------------------------------------------------------ AST */

typedef enum jnode_kind {
    /* expressions */
    JN_CONST, JN_NAME, JN_ATTR, JN_ITEM, JN_SLICE, JN_LIST, JN_TUPLE, JN_DICT, JN_NOT, JN_NEG, JN_POS,
    JN_BINOP, JN_AND, JN_OR, JN_COMPARE, JN_COND, JN_FILTER, JN_TEST, JN_CALL, JN_METHOD,
    /* statements */
    JN_TEXT, JN_OUTPUT, JN_IF, JN_FOR, JN_SET, JN_SET_BLOCK, JN_BREAK, JN_CONTINUE, JN_BODY
} jnode_kind_t;

typedef enum jop {
    JO_ADD, JO_SUB, JO_MUL, JO_DIV, JO_FLOORDIV, JO_MOD, JO_POW, JO_CONCAT,
    JO_EQ, JO_NE, JO_LT, JO_LE, JO_GT, JO_GE, JO_IN, JO_NOTIN
} jop_t;

typedef struct jnode jnode_t;
struct jnode {
    jnode_kind_t kind;
    int line, col;
    int op;                 /* jop_t; JN_TEST: negated; JN_FILTER/TEST/CALL/METHOD: builtin id */
    const jstr_t *name;     /* names, attributes, filters, set targets, text */
    jv_t value;             /* JN_CONST */
    jnode_t *a, *b, *c, *d; /* operands: object, index, slice parts, condition, iterable... */
    jnode_t **args;         /* call/filter/test positional args; list/tuple items; dict keys; body */
    int n_args;
    jnode_t **kwargs;       /* keyword values; dict values; else body */
    const jstr_t **kwnames;
    int n_kwargs;
    const jstr_t **targets; /* JN_FOR: the loop variables; JN_SET: "ns" of ns.attr in name2 */
    int n_targets;
    const jstr_t *name2;    /* JN_SET of a namespace attribute: the attribute */
    int *ops;               /* JN_COMPARE: one jop_t per operand after the first */
};

/* Parse tokens into a JN_BODY. NULL with "L:C: message" in msg. */
jnode_t *jinja_parse(const jtoks_t *toks, jarena_t *a, int max_depth, char *msg, size_t msg_len);

/* ------------------------------------------------------------------ builtins */

typedef enum jb_kind { JB_FILTER, JB_TEST, JB_METHOD, JB_GLOBAL } jb_kind_t;

/* The id of a supported builtin, or -1: the parser's check. */
int jb_lookup(jb_kind_t kind, const char *name, size_t len);
/* Comma-separated names of a kind, for the error message. */
const char *jb_names(jb_kind_t kind);

typedef struct jeval jeval_t;
/* Apply builtin `id` of `kind` to self (the filtered/tested value, the method's
 * object; undefined for globals) and the evaluated arguments. -1 with the
 * error set in the evaluator. */
int jb_call(jeval_t *ev, jb_kind_t kind, int id, const jnode_t *at, jv_t self, const jv_t *args, int n_args,
            const jstr_t *const *kwnames, const jv_t *kwargs, int n_kwargs, jv_t *out);

/* One call of a builtin, as its implementation sees it. */
typedef struct jcall {
    jeval_t *ev;
    const jnode_t *at;
    const char *name;
    jv_t self;
    const jv_t *args;
    int n_args;
    const jstr_t *const *kwnames;
    const jv_t *kwargs;
    int n_kwargs;
} jcall_t;

/* Argument `pos` (or keyword kw), dflt when absent. */
jv_t jc_arg(const jcall_t *c, int pos, const char *kw, jv_t dflt);
/* -1 (error set) when there are more than max_pos positional arguments or a
 * keyword not in the comma-separated list kws. */
int jc_check(const jcall_t *c, int max_pos, const char *kws);
int jc_fail(const jcall_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* str(v) as a new string value. */
int jc_str(const jcall_t *c, jv_t v, jv_t *out);
/* The items of an iterable (list, tuple, dict keys, string characters, undefined: none). */
int jc_items(const jcall_t *c, jv_t v, const jlist_t **out);

int jb_filter(const jcall_t *c, int id, jv_t *out);       /* jinja_filters.c */
int jb_method(const jcall_t *c, int id, jv_t *out);       /* jinja_methods.c */
int jb_test(const jcall_t *c, int id, jv_t v, const jv_t *args, int n_args, bool *out);
/* Python's str.strip/lstrip/rstrip (which: 3 both, 1 left, 2 right; chars NULL = whitespace). */
int jb_strip(const jcall_t *c, const jstr_t *s, const jstr_t *chars, int which, jv_t *out);
/* Python's str.replace(old, new[, count]) (count none: all). */
int jb_replace(const jcall_t *c, const jstr_t *s, jv_t old, jv_t new, jv_t count, jv_t *out);

/* Builtin ids, in the order of the name tables of jinja_builtins.c. */
enum {
    F_TRIM, F_TOJSON, F_LENGTH, F_COUNT, F_JOIN, F_UPPER, F_LOWER, F_CAPITALIZE, F_TITLE, F_DEFAULT, F_D,
    F_FIRST, F_LAST, F_LIST, F_ITEMS, F_STRING, F_INT, F_ABS, F_REPLACE, F_SAFE, F_ESCAPE, F_E, F_SELECT,
    F_REJECT, F_SELECTATTR, F_REJECTATTR, F_MAP, F_COUNT_
};
enum {
    T_DEFINED, T_UNDEFINED, T_NONE, T_BOOLEAN, T_TRUE, T_FALSE, T_INTEGER, T_FLOAT, T_NUMBER, T_STRING,
    T_MAPPING, T_ITERABLE, T_SEQUENCE, T_EQUALTO, T_EQ, T_NE, T_LT, T_LE, T_GT, T_GE, T_IN, T_ODD, T_EVEN,
    T_DIVISIBLEBY, T_LOWER, T_UPPER, T_SAMEAS, T_COUNT_
};
enum {
    M_STRIP, M_LSTRIP, M_RSTRIP, M_SPLIT, M_STARTSWITH, M_ENDSWITH, M_UPPER, M_LOWER, M_REPLACE, M_TITLE,
    M_CAPITALIZE, M_FIND, M_JOIN, M_ITEMS, M_KEYS, M_VALUES, M_GET, M_COUNT_
};
enum { G_NAMESPACE, G_RANGE, G_RAISE_EXCEPTION, G_STRFTIME_NOW, G_DICT, G_COUNT_ };

/* Evaluator services the builtins use. */
jarena_t *jeval_arena(jeval_t *ev);
int jeval_fail(jeval_t *ev, const jnode_t *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int jeval_oom(jeval_t *ev, const jnode_t *at);
/* A string value from a strbuf (the buffer is reset). */
int jeval_take_str(jeval_t *ev, const jnode_t *at, strbuf_t *b, jv_t *out);
/* One step against the budget (builtins that loop count theirs), or `units`
 * of them for work proportional to a value's size. */
int jeval_count_step(jeval_t *ev, const jnode_t *at);
int jeval_charge(jeval_t *ev, const jnode_t *at, uint64_t units);

/* Render root with vars as the outermost frame into out. -1 with err. */
int jeval_run(const jnode_t *root, jarena_t *a, jdict_t *vars, uint64_t max_steps, size_t max_memory, strbuf_t *out,
              spex_err_t *err);

#endif
