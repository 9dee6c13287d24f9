/* chat.c - see chat.h. Two passes over the messages, as the template does:
 * first the system prompt is gathered, then the turns are written. */
#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"

static int check_roles(const chat_message_t *msgs, int n, spex_err_t *err) {
    if (n <= 0) return spex_fail(err, "messages: at least one message is needed");
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r) return spex_fail(err, "messages[%d].role: missing", i);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return spex_fail(err, "messages[%d].role: '%.40s' is not supported (system, user, assistant)", i, r);
        if (!msgs[i].content) return spex_fail(err, "messages[%d].content: missing", i);
    }
    return 0;
}

static void add_content(strbuf_t *b, const chat_message_t *m) {
    sb_add(b, m->content, m->content_len ? m->content_len : strlen(m->content));
}

char *chat_render(const chat_message_t *msgs, int n, const char *bos_token, bool add_generation_prompt,
                  spex_err_t *err) {
    return chat_render_len(msgs, n, bos_token, add_generation_prompt, NULL, err);
}

char *chat_render_len(const chat_message_t *msgs, int n, const char *bos_token, bool add_generation_prompt,
                      size_t *len, spex_err_t *err) {
    if (check_roles(msgs, n, err)) return NULL;
    strbuf_t b = {0};
    sb_str(&b, bos_token ? bos_token : "");
    bool first_system = true;
    for (int i = 0; i < n; i++) {   /* system prompts, hoisted and joined */
        if (strcmp(msgs[i].role, "system")) continue;
        if (!first_system) sb_str(&b, "\n\n");
        add_content(&b, &msgs[i]);
        first_system = false;
    }
    for (int i = 0; i < n; i++) {
        if (!strcmp(msgs[i].role, "user")) {
            sb_str(&b, CHAT_USER);
            add_content(&b, &msgs[i]);
        } else if (!strcmp(msgs[i].role, "assistant")) {
            sb_str(&b, CHAT_ASSISTANT);
            add_content(&b, &msgs[i]);
            sb_str(&b, CHAT_EOS);
        }
    }
    if (add_generation_prompt) sb_str(&b, CHAT_ASSISTANT);
    char *text = sb_take(&b, len);
    if (!text) spex_fail(err, "messages: out of memory");
    return text;
}

int chat_check_messages(const chat_message_t *msgs, int n, spex_err_t *err) { return check_roles(msgs, n, err); }
