/* chat.h - turning chat messages into a prompt string, in DeepSeek-V3's chat
 * format: the built-in format, used when a model ships no chat template (or
 * with --chat-template builtin). A model's own template is rendered by
 * chat_template.h's Jinja interpreter instead.
 *
 * This implements DeepSeek-V3's template's semantics for system, user and
 * assistant messages directly:
 *
 *   prompt = bos_token
 *          + the contents of every system message, in order, joined by "\n\n"
 *            (wherever they appear in the list: the template hoists them)
 *          + for each user message:       "<｜User｜>" + content
 *            for each assistant message:  "<｜Assistant｜>" + content + "<｜end▁of▁sentence｜>"
 *          + "<｜Assistant｜>" when add_generation_prompt
 *
 * which is byte for byte what the template renders for these roles (checked
 * against transformers' apply_chat_template in tests/unit/test_chat.c's cases,
 * and against the interpreter running the real template there too).
 * The markers are written as text; the tokenizer turns them into their added
 * tokens when the vocabulary has them (DeepSeek-V3's does) and into ordinary
 * BPE pieces otherwise (the shipped Austen model's does not). The prompt is
 * therefore encoded without an extra BOS: the template already starts with it.
 *
 * Not supported (rejected with an error naming the message, whichever format
 * renders): role "tool" and assistant messages carrying tool_calls instead of
 * content. */
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

/* The check both formats apply first: n >= 1, every role is system, user or
 * assistant, every content is present. -1 with err = "messages[i].role: ...". */
int chat_check_messages(const chat_message_t *msgs, int n, spex_err_t *err);

#endif
