/* jinja.c - see jinja.h: compiling (lex + parse into the template's own
 * arena), render contexts (variables in the render's arena) and rendering. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/serve/jinja_internal.h"

struct jinja_template {
    jarena_t arena;   /* AST and literals */
    jnode_t *root;
    jinja_limits_t lim;
};

struct jinja_ctx {
    jarena_t arena;   /* variables, then everything the render makes */
    jdict_t *vars;
    const jinja_template_t *t;
};

jinja_limits_t jinja_default_limits(void) {
    return (jinja_limits_t){.max_template_bytes = 1u << 20, .max_depth = 128, .max_steps = 20000000,
                            .max_memory = 256u << 20};
}

jinja_template_t *jinja_compile(const char *src, size_t len, const jinja_limits_t *lim, spex_err_t *err) {
    jinja_limits_t l = lim ? *lim : jinja_default_limits();
    if (len > l.max_template_bytes) {
        spex_fail(err, "template of %zu bytes is larger than the %zu-byte limit", len, l.max_template_bytes);
        return NULL;
    }
    jinja_template_t *t = calloc(1, sizeof *t);
    if (!t) { spex_fail(err, "out of memory"); return NULL; }
    t->lim = l;
    jarena_init(&t->arena, 64 * len + (1u << 20));   /* generous: the AST of any template of this size */
    jtoks_t toks;
    if (jinja_lex(src, len, &t->arena, &toks, err->msg, sizeof err->msg)) { jinja_free(t); return NULL; }
    t->root = jinja_parse(&toks, &t->arena, l.max_depth, err->msg, sizeof err->msg);
    jtoks_free(&toks);
    if (!t->root) { jinja_free(t); return NULL; }
    return t;
}

void jinja_free(jinja_template_t *t) {
    if (!t) return;
    jarena_free(&t->arena);
    free(t);
}

jinja_ctx_t *jinja_ctx_create(const jinja_template_t *t) {
    jinja_ctx_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->t = t;
    jarena_init(&c->arena, t->lim.max_memory);
    if (!(c->vars = jdict_new(&c->arena, 16))) { jinja_ctx_free(c); return NULL; }
    return c;
}

void jinja_ctx_free(jinja_ctx_t *c) {
    if (!c) return;
    jarena_free(&c->arena);
    free(c);
}

static int set_var(jinja_ctx_t *c, const char *name, jv_t v, spex_err_t *err) {
    const jstr_t *key = jstr_new(&c->arena, name, strlen(name));
    if (!key || jdict_set(&c->arena, c->vars, key, v))
        return spex_fail(err, "template variables: more than the %zu MiB memory limit", c->t->lim.max_memory >> 20);
    return 0;
}

int jinja_ctx_set_string(jinja_ctx_t *c, const char *name, const char *s, size_t len, spex_err_t *err) {
    const jstr_t *v = jstr_new(&c->arena, s, len);
    if (!v) return spex_fail(err, "template variables: more than the %zu MiB memory limit", c->t->lim.max_memory >> 20);
    return set_var(c, name, jv_strv(v), err);
}

int jinja_ctx_set_bool(jinja_ctx_t *c, const char *name, bool b, spex_err_t *err) {
    return set_var(c, name, jv_bool(b), err);
}

int jinja_ctx_set_none(jinja_ctx_t *c, const char *name, spex_err_t *err) { return set_var(c, name, jv_none(), err); }

static int from_json(jarena_t *a, const cJSON *j, size_t (*str_len)(const cJSON *), jv_t *out) {
    if (cJSON_IsNull(j)) { *out = jv_none(); return 0; }
    if (cJSON_IsBool(j)) { *out = jv_bool(cJSON_IsTrue(j)); return 0; }
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        bool integral = d == floor(d) && fabs(d) < 9e15;
        *out = integral ? jv_int((int64_t)d) : jv_float(d);
        return 0;
    }
    if (cJSON_IsString(j)) {
        const jstr_t *s = jstr_new(a, j->valuestring, str_len ? str_len(j) : strlen(j->valuestring));
        if (!s) return -1;
        *out = jv_strv(s);
        return 0;
    }
    if (cJSON_IsArray(j)) {
        jlist_t *l = jlist_new(a, (size_t)cJSON_GetArraySize(j));
        if (!l) return -1;
        size_t i = 0;
        for (const cJSON *it = j->child; it; it = it->next)
            if (from_json(a, it, str_len, &l->it[i++])) return -1;
        *out = jv_listv(l);
        return 0;
    }
    if (cJSON_IsObject(j)) {
        jdict_t *d = jdict_new(a, (size_t)cJSON_GetArraySize(j));
        if (!d) return -1;
        for (const cJSON *it = j->child; it; it = it->next) {
            jv_t v;
            const jstr_t *k = jstr_new(a, it->string, strlen(it->string));
            if (!k || from_json(a, it, str_len, &v) || jdict_set(a, d, k, v)) return -1;
        }
        *out = jv_dictv(d);
        return 0;
    }
    return -1;
}

int jinja_ctx_set_json(jinja_ctx_t *c, const char *name, const cJSON *v, size_t (*str_len)(const cJSON *),
                       spex_err_t *err) {
    jv_t val;
    if (from_json(&c->arena, v, str_len, &val))
        return spex_fail(err, "template variable '%s': more than the %zu MiB memory limit (or not JSON)", name,
                         c->t->lim.max_memory >> 20);
    return set_var(c, name, val, err);
}

static int message_dict(jarena_t *a, const char *role, const char *content, size_t len, jv_t *out) {
    jdict_t *d = jdict_new(a, 2);
    const jstr_t *kr = jstr_new(a, "role", 4), *kc = jstr_new(a, "content", 7), *r = role ? jstr_new(a, role, strlen(role)) : NULL;
    const jstr_t *c = content ? jstr_new(a, content, len) : NULL;
    if (!d || !kr || !kc || (role && !r) || (content && !c)) return -1;
    if (jdict_set(a, d, kr, r ? jv_strv(r) : jv_none()) || jdict_set(a, d, kc, c ? jv_strv(c) : jv_none())) return -1;
    *out = jv_dictv(d);
    return 0;
}

int jinja_ctx_set_messages(jinja_ctx_t *c, const char *name, int n, const char *const *roles,
                           const char *const *contents, const size_t *lens, spex_err_t *err) {
    jlist_t *l = jlist_new(&c->arena, n > 0 ? (size_t)n : 0);
    for (int i = 0; l && i < n; i++)
        if (message_dict(&c->arena, roles[i], contents[i], lens[i], &l->it[i])) l = NULL;
    if (!l) return spex_fail(err, "template variable '%s': more than the %zu MiB memory limit", name,
                             c->t->lim.max_memory >> 20);
    return set_var(c, name, jv_listv(l), err);
}

char *jinja_render(const jinja_template_t *t, jinja_ctx_t *c, size_t *len, spex_err_t *err) {
    strbuf_t out = {0};
    sb_str(&out, "");
    if (jeval_run(t->root, &c->arena, c->vars, t->lim.max_steps, t->lim.max_memory, &out, err)) {
        sb_free(&out);
        return NULL;
    }
    char *text = sb_take(&out, len);
    if (!text) spex_fail(err, "out of memory");
    return text;
}
