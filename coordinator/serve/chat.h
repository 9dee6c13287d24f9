/* chat.h - turning chat messages into a prompt string, in DeepSeek-V3's chat format.
 *
 * DeepSeek-V3 ships a Jinja chat_template in tokenizer_config.json. Spex does
 * not embed a Jinja engine; it implements that template's semantics for
 * system, user and assistant messages directly:
 *
 *   prompt = bos_token
 *          + the contents of every system message, in order, joined by "\n\n"
 *            (wherever they appear in the list: the template hoists them)
 *          + for each user message:       "<｜User｜>" + content
 *            for each assistant message:  "<｜Assistant｜>" + content + "<｜end▁of▁sentence｜>"
 *          + "<｜Assistant｜>" when add_generation_prompt
 *
 * which is byte for byte what the template renders for these roles (checked
 * against transformers' apply_chat_template in tests/unit/test_chat.c's cases).
 * The markers are written as text; the tokenizer turns them into their added
 * tokens when the vocabulary has them (DeepSeek-V3's does) and into ordinary
 * BPE pieces otherwise (the shipped Austen model's does not). The prompt is
 * therefore encoded without an extra BOS: the template already starts with it.
 *
 * Not supported (rejected with an error naming the message): role "tool" and
 * assistant messages carrying tool_calls instead of content. */
#ifndef SPEX_CHAT_H
#define SPEX_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

typedef struct chat_message {
    const char *role;      /* "system", "user" or "assistant" */
    const char *content;   /* the text */
    size_t content_len;    /* its bytes, NUL bytes included; 0 = strlen(content) */
} chat_message_t;

#define CHAT_USER "<｜User｜>"
#define CHAT_ASSISTANT "<｜Assistant｜>"
#define CHAT_EOS "<｜end▁of▁sentence｜>"

/* Render msgs[n] (n >= 1). bos_token may be NULL or "" (no BOS). Returns a
 * malloc'ed NUL-terminated string, or NULL with err = "messages[i].role: ...". */
char *chat_render(const chat_message_t *msgs, int n, const char *bos_token, bool add_generation_prompt,
                  spex_err_t *err);
/* The same with the rendered length in *len, for contents that hold NUL bytes. */
char *chat_render_len(const chat_message_t *msgs, int n, const char *bos_token, bool add_generation_prompt,
                      size_t *len, spex_err_t *err);

/* How a model directory's tokenizer_config.json relates to the built-in format:
 * CHAT_TEMPLATE_DEEPSEEK (its chat_template uses DeepSeek's markers),
 * CHAT_TEMPLATE_NONE (no file or no chat_template), CHAT_TEMPLATE_OTHER (a
 * different template: the built-in DeepSeek format is used anyway, callers warn). */
typedef enum chat_template_kind { CHAT_TEMPLATE_NONE, CHAT_TEMPLATE_DEEPSEEK, CHAT_TEMPLATE_OTHER } chat_template_kind_t;
chat_template_kind_t chat_template_detect(const char *model_dir);

#endif
