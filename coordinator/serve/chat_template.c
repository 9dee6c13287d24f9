/* chat_template.c - see chat_template.h: finding the model's template,
 * compiling it once, and rendering message lists with it (or with the
 * built-in format). */
#include "coordinator/serve/chat_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coordinator/serve/jinja.h"
#include "core/file.h"

#define SPECIAL_TOKENS 4
static const char *const SPECIAL_NAMES[SPECIAL_TOKENS] = {"bos_token", "eos_token", "pad_token", "unk_token"};

struct chat_template {
    jinja_template_t *jinja;           /* NULL: the built-in format */
    char *special[SPECIAL_TOKENS];     /* tokenizer_config.json's, NULL when not defined */
    char describe[4400];
};

/* A special token of tokenizer_config.json: a string or {"content": string}. */
static char *special_token(const cJSON *cfg, const char *name) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, name);
    if (cJSON_IsObject(t)) t = cJSON_GetObjectItemCaseSensitive(t, "content");
    return cJSON_IsString(t) ? strdup(t->valuestring) : NULL;
}

/* tokenizer_config.json's chat_template: a string, or the "default" of a list of {name, template}. */
static int config_template(const cJSON *cfg, const char *path, const char **out, spex_err_t *err) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    *out = NULL;
    if (!t || cJSON_IsNull(t)) return 0;
    if (cJSON_IsString(t)) { *out = t->valuestring; return 0; }
    if (cJSON_IsArray(t)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, t) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
            const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(it, "template");
            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") && cJSON_IsString(tmpl)) {
                *out = tmpl->valuestring;
                return 0;
            }
        }
        return spex_fail(err, "%s: chat_template is a list without a template named 'default' "
                              "(pass one with --chat-template FILE)", path);
    }
    return spex_fail(err, "%s: chat_template must be a string or a list of {name, template}", path);
}

static int compile(chat_template_t *t, const char *src, const char *where, spex_err_t *err) {
    if (!(t->jinja = jinja_compile(src, strlen(src), NULL, err)))
        return spex_err_prefix(err, "%s: cannot use this chat template: ", where);
    snprintf(t->describe, sizeof t->describe, "%s", where);
    return 0;
}

/* Special tokens from tokenizer_config.json, and its template when `want_template`. */
static int read_config(chat_template_t *t, const char *dir, bool want_template, spex_err_t *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (access(path, F_OK) != 0) return 0;
    char *text = spex_read_file(path, 64u << 20, NULL, err);
    if (!text) return -1;
    cJSON *cfg = cJSON_Parse(text);
    free(text);
    if (!cfg) return spex_fail(err, "%s: not valid JSON", path);
    for (int i = 0; i < SPECIAL_TOKENS; i++) t->special[i] = special_token(cfg, SPECIAL_NAMES[i]);
    const char *src = NULL;
    int rc = want_template ? config_template(cfg, path, &src, err) : 0;
    if (!rc && src) {
        char where[4200];
        snprintf(where, sizeof where, "%s: chat_template", path);
        rc = compile(t, src, where, err);
    }
    cJSON_Delete(cfg);
    return rc;
}

static int compile_file(chat_template_t *t, const char *path, spex_err_t *err) {
    char *src = spex_read_file(path, 1u << 20, NULL, err);
    if (!src) return spex_err_prefix(err, "chat template '%s': ", path);
    int rc = compile(t, src, path, err);
    free(src);
    return rc;
}

chat_template_t *chat_template_load(const char *model_dir, const char *choice, spex_err_t *err) {
    chat_template_t *t = calloc(1, sizeof *t);
    if (!t) { spex_fail(err, "out of memory"); return NULL; }
    bool automatic = !choice || !strcmp(choice, "auto"), builtin = choice && !strcmp(choice, "builtin");
    char jinja_path[4096];
    snprintf(jinja_path, sizeof jinja_path, "%s/chat_template.jinja", model_dir ? model_dir : ".");
    bool has_jinja_file = automatic && model_dir && access(jinja_path, F_OK) == 0;
    int rc = model_dir ? read_config(t, model_dir, automatic && !has_jinja_file, err) : 0;
    if (!rc && has_jinja_file) rc = compile_file(t, jinja_path, err);
    if (!rc && !automatic && !builtin) rc = compile_file(t, choice, err);
    if (rc) { chat_template_free(t); return NULL; }
    if (!t->jinja)
        snprintf(t->describe, sizeof t->describe, "the built-in DeepSeek-V3 format (%s)",
                 builtin ? "--chat-template builtin" : "the model has no chat_template");
    return t;
}

void chat_template_free(chat_template_t *t) {
    if (!t) return;
    jinja_free(t->jinja);
    for (int i = 0; i < SPECIAL_TOKENS; i++) free(t->special[i]);
    free(t);
}

const char *chat_template_describe(const chat_template_t *t) { return t->describe; }
bool chat_template_is_builtin(const chat_template_t *t) { return !t->jinja; }

/* The variables every render gets but messages. */
static int common_vars(const chat_template_t *t, jinja_ctx_t *c, bool add_gen, spex_err_t *err) {
    for (int i = 0; i < SPECIAL_TOKENS; i++)
        if (t->special[i] && jinja_ctx_set_string(c, SPECIAL_NAMES[i], t->special[i], strlen(t->special[i]), err))
            return -1;
    if (jinja_ctx_set_bool(c, "add_generation_prompt", add_gen, err) || jinja_ctx_set_none(c, "tools", err) ||
        jinja_ctx_set_none(c, "documents", err))
        return -1;
    return 0;
}

static char *render_ctx(const chat_template_t *t, jinja_ctx_t *c, size_t *len, spex_err_t *err) {
    char *text = jinja_render(t->jinja, c, len, err);
    if (!text) spex_err_prefix(err, "chat template: ");
    return text;
}

/* messages as the interpreter's list of {role, content} dicts. */
static int set_messages(jinja_ctx_t *c, const chat_message_t *msgs, int n, spex_err_t *err) {
    const char **roles = calloc((size_t)n, sizeof *roles), **contents = calloc((size_t)n, sizeof *contents);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    int rc = roles && contents && lens ? 0 : spex_fail(err, "out of memory");
    for (int i = 0; !rc && i < n; i++) {
        roles[i] = msgs[i].role;
        contents[i] = msgs[i].content;
        lens[i] = msgs[i].content_len ? msgs[i].content_len : strlen(msgs[i].content);
    }
    if (!rc) rc = jinja_ctx_set_messages(c, "messages", n, roles, contents, lens, err);
    free(roles);
    free(contents);
    free(lens);
    return rc;
}

char *chat_template_render(const chat_template_t *t, const chat_message_t *msgs, int n, bool add_generation_prompt,
                           size_t *len, spex_err_t *err) {
    if (!t->jinja) return chat_render_len(msgs, n, t->special[0], add_generation_prompt, len, err);
    if (chat_check_messages(msgs, n, err)) return NULL;
    jinja_ctx_t *c = jinja_ctx_create(t->jinja);
    if (!c) { spex_fail(err, "out of memory"); return NULL; }
    char *text = NULL;
    if (!common_vars(t, c, add_generation_prompt, err) && !set_messages(c, msgs, n, err))
        text = render_ctx(t, c, len, err);
    jinja_ctx_free(c);
    return text;
}

/* The built-in format from a JSON list: role and content strings only. */
static char *render_builtin_json(const chat_template_t *t, const cJSON *messages, size_t (*str_len)(const cJSON *),
                                 bool add_gen, size_t *len, spex_err_t *err) {
    int n = cJSON_GetArraySize(messages);
    chat_message_t *m = calloc(n > 0 ? (size_t)n : 1, sizeof *m);
    if (!m) { spex_fail(err, "out of memory"); return NULL; }
    for (int i = 0; i < n; i++) {
        const cJSON *it = cJSON_GetArrayItem(messages, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        m[i].role = cJSON_IsString(role) ? role->valuestring : NULL;
        m[i].content = cJSON_IsString(content) ? content->valuestring : NULL;
        if (m[i].content && str_len) m[i].content_len = str_len(content);
    }
    char *text = chat_render_len(m, n, t->special[0], add_gen, len, err);
    free(m);
    return text;
}

char *chat_template_render_json(const chat_template_t *t, const cJSON *messages, size_t (*str_len)(const cJSON *),
                                bool add_generation_prompt, size_t *len, spex_err_t *err) {
    if (!cJSON_IsArray(messages)) { spex_fail(err, "messages: must be a JSON array"); return NULL; }
    if (!t->jinja) return render_builtin_json(t, messages, str_len, add_generation_prompt, len, err);
    jinja_ctx_t *c = jinja_ctx_create(t->jinja);
    if (!c) { spex_fail(err, "out of memory"); return NULL; }
    char *text = NULL;
    if (!common_vars(t, c, add_generation_prompt, err) && !jinja_ctx_set_json(c, "messages", messages, str_len, err))
        text = render_ctx(t, c, len, err);
    jinja_ctx_free(c);
    return text;
}
