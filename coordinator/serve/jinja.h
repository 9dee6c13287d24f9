/* jinja.h - a small interpreter for the subset of Jinja2 that chat templates use.
 *
 * Hugging Face models ship their chat format as a Jinja2 template in
 * tokenizer_config.json ("chat_template"), rendered by transformers with
 * trim_blocks, lstrip_blocks, the loopcontrols extension, its own tojson and a
 * raise_exception() global. There is no Jinja library for C in Debian, so this
 * is one, limited to what DeepSeek-V3/R1, ChatML (Qwen) and Llama-3 templates
 * need, and checked byte for byte against python3-jinja2
 * (tests/chat_template/check_templates.py). docs/serving.md lists the subset.
 *
 * Design: compile once (lexer -> parser -> AST, jinja_internal.h names the
 * files), render many times, concurrently: a template is immutable after
 * jinja_compile, and each render has its own context (an arena holding every
 * value it makes). Anything outside the subset -- an unknown filter, test,
 * method, function or statement -- is a compile error naming the construct and
 * its line:column, so a template is either rendered exactly or refused at
 * startup, never approximated. Every render is bounded (steps, memory, output),
 * so neither a hostile template nor a hostile message list can hang or
 * exhaust the process. */
#ifndef SPEX_JINJA_H
#define SPEX_JINJA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"

typedef struct jinja_limits {
    size_t max_template_bytes;   /* compile: source size */
    int max_depth;               /* compile: nesting of blocks and expressions */
    uint64_t max_steps;          /* render: evaluated nodes (loop iterations included) */
    size_t max_memory;           /* render: bytes of values made, output included */
} jinja_limits_t;

/* 1 MiB source, depth 128, 20 million steps, 256 MiB. */
jinja_limits_t jinja_default_limits(void);

typedef struct jinja_template jinja_template_t;
typedef struct jinja_ctx jinja_ctx_t;

/* Compile src[0..len) (lim NULL: the defaults). NULL with err =
 * "3:15: unsupported filter 'foo' (supported: ...)". */
jinja_template_t *jinja_compile(const char *src, size_t len, const jinja_limits_t *lim, spex_err_t *err);
void jinja_free(jinja_template_t *t);

/* The variables of one render. Setters return -1 with err when the memory
 * budget is exceeded. A name set twice keeps the last value. */
jinja_ctx_t *jinja_ctx_create(const jinja_template_t *t);
void jinja_ctx_free(jinja_ctx_t *c);
int jinja_ctx_set_string(jinja_ctx_t *c, const char *name, const char *s, size_t len, spex_err_t *err);
int jinja_ctx_set_bool(jinja_ctx_t *c, const char *name, bool b, spex_err_t *err);
int jinja_ctx_set_none(jinja_ctx_t *c, const char *name, spex_err_t *err);
/* A JSON value (numbers: integers as int, others as float). str_len, if not
 * NULL, gives a string node's byte length (for strings holding NUL bytes). */
int jinja_ctx_set_json(jinja_ctx_t *c, const char *name, const cJSON *v, size_t (*str_len)(const cJSON *),
                       spex_err_t *err);
/* A list of n {"role": roles[i], "content": contents[i]} dicts (content of
 * lens[i] bytes, NUL bytes allowed; a NULL content is none). */
int jinja_ctx_set_messages(jinja_ctx_t *c, const char *name, int n, const char *const *roles,
                           const char *const *contents, const size_t *lens, spex_err_t *err);

/* Render with c's variables (a context serves one render). Returns the
 * malloc'ed NUL-terminated output with its length in *len (may be NULL), or
 * NULL with err = "5:3: raise_exception: Conversation roles must alternate"
 * or a budget exceeded. */
char *jinja_render(const jinja_template_t *t, jinja_ctx_t *c, size_t *len, spex_err_t *err);

#endif
