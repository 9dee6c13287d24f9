/* chat_template.h - the chat format a served model uses: its own Jinja
 * chat_template, run by the interpreter of jinja.h, or the built-in DeepSeek-V3
 * format of chat.h.
 *
 * Where the template comes from (chat_template_load's `choice`):
 *   NULL or "auto"  the model directory's chat_template.jinja if present, else
 *                   tokenizer_config.json's "chat_template" (a string, or a list
 *                   of {name, template}: the one named "default"), else the
 *                   built-in format (a model with no template at all);
 *   "builtin"       the built-in format, whatever the model ships;
 *   anything else   a file holding a Jinja template.
 * A template the interpreter cannot run is an error naming the construct and
 * its line:column: never a silent substitute.
 *
 * A Jinja template is rendered as transformers' apply_chat_template renders it:
 * variables messages (a list of {role, content}), add_generation_prompt,
 * bos_token / eos_token / pad_token / unk_token (tokenizer_config.json's,
 * those it defines), tools and documents (none). */
#ifndef SPEX_CHAT_TEMPLATE_H
#define SPEX_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "coordinator/serve/chat.h"
#include "core/error.h"

typedef struct chat_template chat_template_t;

chat_template_t *chat_template_load(const char *model_dir, const char *choice, spex_err_t *err);
void chat_template_free(chat_template_t *t);

/* For the startup log: "tokenizer_config.json's chat_template", "built-in DeepSeek-V3 format (...)", ... */
const char *chat_template_describe(const chat_template_t *t);
bool chat_template_is_builtin(const chat_template_t *t);

/* Render msgs[n] (roles system, user, assistant, as chat.h checks). Malloc'ed
 * text with its length in *len, or NULL with err (the template's own
 * raise_exception message included). Safe to call from several threads. */
char *chat_template_render(const chat_template_t *t, const chat_message_t *msgs, int n, bool add_generation_prompt,
                           size_t *len, spex_err_t *err);

/* Render a JSON message list as is (any fields: tool_calls, ...), for
 * `spex chat-template`. str_len as in jinja_ctx_set_json. The built-in format
 * takes role and content strings only. */
char *chat_template_render_json(const chat_template_t *t, const cJSON *messages, size_t (*str_len)(const cJSON *),
                                bool add_generation_prompt, size_t *len, spex_err_t *err);

#endif
