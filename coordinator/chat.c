/* chat.c - see chat.h. Two passes over the messages, as the template does:
 * first the system prompt is gathered, then the turns are written. */
#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

typedef struct buf {
    char *p;
    size_t n, cap;
} buf_t;

static int buf_add(buf_t *b, const char *s) {
    size_t len = strlen(s);
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len + 1);
    b->n += len;
    return 0;
}

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

char *chat_render(const chat_message_t *msgs, int n, const char *bos_token, bool add_generation_prompt,
                  spex_err_t *err) {
    if (check_roles(msgs, n, err)) return NULL;
    buf_t b = {0};
    int rc = buf_add(&b, bos_token ? bos_token : "");
    bool first_system = true;
    for (int i = 0; i < n && rc == 0; i++) {   /* system prompts, hoisted and joined */
        if (strcmp(msgs[i].role, "system")) continue;
        if (!first_system) rc |= buf_add(&b, "\n\n");
        rc |= buf_add(&b, msgs[i].content);
        first_system = false;
    }
    for (int i = 0; i < n && rc == 0; i++) {
        if (!strcmp(msgs[i].role, "user")) {
            rc |= buf_add(&b, CHAT_USER);
            rc |= buf_add(&b, msgs[i].content);
        } else if (!strcmp(msgs[i].role, "assistant")) {
            rc |= buf_add(&b, CHAT_ASSISTANT);
            rc |= buf_add(&b, msgs[i].content);
            rc |= buf_add(&b, CHAT_EOS);
        }
    }
    if (rc == 0 && add_generation_prompt) rc = buf_add(&b, CHAT_ASSISTANT);
    if (rc) {
        free(b.p);
        spex_fail(err, "messages: out of memory");
        return NULL;
    }
    return b.p;
}

/* Read a whole small file; NULL if missing or unreadable. */
static char *read_small_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *data = NULL;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size >= 0 && size < (64L << 20) && fseek(f, 0, SEEK_SET) == 0 && (data = malloc((size_t)size + 1))) {
        if (fread(data, 1, (size_t)size, f) != (size_t)size) {
            free(data);
            data = NULL;
        } else {
            data[size] = '\0';
        }
    }
    fclose(f);
    return data;
}

chat_template_kind_t chat_template_detect(const char *model_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    char *text = read_small_file(path);
    if (!text) return CHAT_TEMPLATE_NONE;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    chat_template_kind_t kind = CHAT_TEMPLATE_NONE;
    if (cJSON_IsString(t))
        kind = strstr(t->valuestring, CHAT_USER) && strstr(t->valuestring, CHAT_ASSISTANT) ? CHAT_TEMPLATE_DEEPSEEK
                                                                                           : CHAT_TEMPLATE_OTHER;
    cJSON_Delete(root);
    return kind;
}
