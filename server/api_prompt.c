/* api_prompt.c - see api_prompt.h. */
#include "api_prompt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/serve/chat.h"
#include "coordinator/serve/chat_template.h"
#include "server/json_str.h"

#define BAD_REQUEST API_BAD_REQUEST

static int ids_from_array(const api_ctx_t *ctx, const cJSON *arr, const char *param, api_prompt_t *p,
                          api_error_t *e) {
    int n = cJSON_GetArraySize(arr);
    if (n == 0) return BAD_REQUEST(e, "prompt", "%s is empty", param);
    p->ids = malloc(sizeof(int32_t) * (size_t)n);
    if (!p->ids) return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (v != floor(v) || v < 0 || v >= ctx->vocab_size)
            return BAD_REQUEST(e, "prompt", "%s[%d] is not a token id in [0, %d)", param, i, ctx->vocab_size);
        p->ids[i++] = (int32_t)v;
    }
    p->n = n;
    return 0;
}

static int encode(const api_ctx_t *ctx, const char *text, size_t len, bool add_bos, const char *param,
                  api_prompt_t *p, api_error_t *e) {
    if (len == 0) return BAD_REQUEST(e, param, "the prompt is empty");
    if (!ctx->tok)
        return BAD_REQUEST(e, param, "this model has no tokenizer.json: send the prompt as an array of token ids");
    spex_err_t err = {0};
    size_t n = 0;
    if (tokenizer_encode(ctx->tok, text, len, add_bos, &p->ids, &n, &err))
        return BAD_REQUEST(e, param, "cannot tokenize: %s", err.msg);
    if (n == 0) return BAD_REQUEST(e, param, "the prompt is empty");
    p->n = (int)n;
    return 0;
}

/* echo: the prompt's text, as given or decoded from its token ids. */
static int echo_text(const api_ctx_t *ctx, const cJSON *v, api_prompt_t *p, api_error_t *e) {
    if (cJSON_IsString(v)) {
        p->echo_len = json_str_len(v);
        p->echo = malloc(p->echo_len + 1);
        if (p->echo) memcpy(p->echo, v->valuestring, p->echo_len + 1);
    } else {
        if (!ctx->tok) return BAD_REQUEST(e, "echo", "this model has no tokenizer.json: no text to echo");
        spex_err_t err = {0};
        p->echo = tokenizer_decode(ctx->tok, p->ids, (size_t)p->n, false, &p->echo_len, &err);
    }
    return p->echo ? 0 : api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
}

/* One prompt: a string or an array of token ids. */
static int one_prompt(const api_ctx_t *ctx, const cJSON *v, const char *param, bool echo, api_prompt_t *p,
                      api_error_t *e) {
    int rc;
    if (cJSON_IsString(v)) {
        bool bos = ctx->tok && tokenizer_bos_id(ctx->tok) >= 0 && tokenizer_add_bos_default(ctx->tok);
        rc = encode(ctx, v->valuestring, json_str_len(v), bos, "prompt", p, e);
        p->echo_skip = bos;
    } else if (cJSON_IsArray(v)) {
        rc = ids_from_array(ctx, v, param, p, e);
    } else {
        return BAD_REQUEST(e, "prompt", "%s must be a string or an array of token ids", param);
    }
    return rc || !echo ? rc : echo_text(ctx, v, p, e);
}

/* prompt: one (string, ids) or several ([strings] or [[ids]]), each its own choices. */
int api_parse_prompt(const api_ctx_t *ctx, const cJSON *root, api_request_t *r, api_error_t *e) {
    const cJSON *p = api_field(root, "prompt");
    if (!p) return BAD_REQUEST(e, "prompt", "'prompt' is required");
    bool several = cJSON_IsArray(p) && cJSON_GetArraySize(p) >= 1 && !cJSON_IsNumber(cJSON_GetArrayItem(p, 0));
    int n = several ? cJSON_GetArraySize(p) : 1;
    if (n * r->n > API_MAX_CHOICES)
        return BAD_REQUEST(e, several ? "prompt" : "n", "%d prompts x n = %d asks for more than %d choices", n, r->n,
                           API_MAX_CHOICES);
    if (!(r->prompts = calloc((size_t)n, sizeof *r->prompts)))
        return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    r->n_prompts = n;
    for (int i = 0; i < n; i++) {
        char param[32];
        snprintf(param, sizeof param, several ? "prompt[%d]" : "prompt", i);
        const cJSON *v = several ? cJSON_GetArrayItem(p, i) : p;
        if (several && cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0 && !cJSON_IsNumber(cJSON_GetArrayItem(v, 0)))
            return BAD_REQUEST(e, "prompt", "%s must be a string or an array of token ids", param);
        if (one_prompt(ctx, v, param, r->echo, &r->prompts[i], e)) return -1;
    }
    return 0;
}

/* Message content: a string, or text parts concatenated, with its length in
 * *len (NUL bytes included). Malloc'ed. */
static char *message_content(const cJSON *c, int i, size_t *len, api_error_t *e) {
    strbuf_t b = {0};
    sb_str(&b, "");
    if (cJSON_IsString(c)) {
        sb_add(&b, c->valuestring, json_str_len(c));
        char *s = sb_take(&b, len);
        if (!s) api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        return s;
    }
    if (!cJSON_IsArray(c)) {
        sb_free(&b);   /* a leak on every such request until the fuzzer found it */
        BAD_REQUEST(e, "messages", "messages[%d].content must be a string or an array of text parts", i);
        return NULL;
    }
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!json_str_is(type, "text") || !cJSON_IsString(text)) {
            sb_free(&b);
            BAD_REQUEST(e, "messages", "messages[%d].content: only parts {\"type\": \"text\", \"text\": ...} are "
                                       "supported", i);
            return NULL;
        }
        sb_add(&b, text->valuestring, json_str_len(text));
    }
    char *s = sb_take(&b, len);
    if (!s) api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    return s;
}

/* Message members besides role and content that would change the answer. */
static int check_message_fields(const cJSON *msg, int i, api_error_t *e) {
    static const char *const refused[] = {"name", "tool_calls", "tool_call_id", "function_call", "audio"};
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++)
        if (api_field(msg, refused[k]))
            return api_fail(e, 400, "invalid_request_error", "messages", "unsupported_parameter",
                            "messages[%d].%s is not supported", i, refused[k]);
    return 0;
}

static int render_chat(const api_ctx_t *ctx, const cJSON *msgs, api_request_t *r, api_error_t *e) {
    int n = cJSON_GetArraySize(msgs), rc = -1;
    chat_message_t *m = calloc((size_t)n, sizeof *m);
    char **content = calloc((size_t)n, sizeof *content);
    if (!m || !content) { api_fail(e, 500, "server_error", NULL, NULL, "out of memory"); goto done; }
    for (int i = 0; i < n; i++) {
        const cJSON *it = cJSON_GetArrayItem(msgs, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
        if (!cJSON_IsObject(it) || !cJSON_IsString(role)) {
            BAD_REQUEST(e, "messages", "messages[%d] must be an object with a string 'role'", i);
            goto done;
        }
        if (json_str_len(role) != strlen(role->valuestring)) {
            BAD_REQUEST(e, "messages", "messages[%d].role holds a NUL character", i);
            goto done;
        }
        size_t len = 0;
        if (!(content[i] = message_content(cJSON_GetObjectItemCaseSensitive(it, "content"), i, &len, e))) goto done;
        if (check_message_fields(it, i, e)) goto done;
        /* developer: OpenAI's newer name for system, the same in the template */
        const char *rname = json_str_is(role, "developer") ? "system" : role->valuestring;
        m[i] = (chat_message_t){rname, content[i], len};
    }
    spex_err_t err = {0};
    int32_t bos = ctx->tok ? tokenizer_bos_id(ctx->tok) : -1;
    size_t bos_len = 0;
    const char *bos_bytes = bos >= 0 ? tokenizer_token_bytes(ctx->tok, bos, &bos_len) : NULL;
    char bos_str[256] = "";
    if (bos_bytes && bos_len < sizeof bos_str) memcpy(bos_str, bos_bytes, bos_len), bos_str[bos_len] = '\0';
    size_t text_len = 0;
    char *text = ctx->chat_template ? chat_template_render(ctx->chat_template, m, n, true, &text_len, &err)
                                    : chat_render_len(m, n, bos_str, true, &text_len, &err);
    if (!text) { BAD_REQUEST(e, "messages", "%s", err.msg); goto done; }
    if (!(r->prompts = calloc(1, sizeof *r->prompts))) {
        api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    } else {
        r->n_prompts = 1;
        rc = encode(ctx, text, text_len, false, "messages", &r->prompts[0], e);
    }
    free(text);
done:
    for (int i = 0; content && i < n; i++) free(content[i]);
    free(content);
    free(m);
    return rc;
}

int api_parse_messages(const api_ctx_t *ctx, const cJSON *root, api_request_t *r, api_error_t *e) {
    const cJSON *msgs = api_field(root, "messages");
    if (!msgs) return BAD_REQUEST(e, "messages", "'messages' is required");
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
        return BAD_REQUEST(e, "messages", "'messages' must be a non-empty array");
    return render_chat(ctx, msgs, r, e);
}
