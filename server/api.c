/* api.c - see api.h. Parsing is one small function per field group; each
 * returns -1 with the error filled, so api_parse_request reads as a list. */
#include "api.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "coordinator/serve/chat.h"
#include "server/json_str.h"

#define BAD_REQUEST(e, param, ...) api_fail(e, 400, "invalid_request_error", param, "invalid_value", __VA_ARGS__)

int api_fail(api_error_t *e, int status, const char *type, const char *param, const char *code, const char *fmt,
             ...) {
    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---------------------------------------------------------------- field readers */

/* The field, or NULL when absent or null. */
static const cJSON *field(const cJSON *root, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, name);
    return f && !cJSON_IsNull(f) ? f : NULL;
}

static int get_bool(const cJSON *root, const char *name, bool *out, api_error_t *e) {
    const cJSON *f = field(root, name);
    if (!f) return 0;
    if (!cJSON_IsBool(f)) return BAD_REQUEST(e, name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(f);
    return 0;
}

static int get_number(const cJSON *root, const char *name, double lo, double hi, bool lo_open, double *out,
                      bool *present, api_error_t *e) {
    const cJSON *f = field(root, name);
    if (present) *present = f != NULL;
    if (!f) return 0;
    if (!cJSON_IsNumber(f)) return BAD_REQUEST(e, name, "'%s' must be a number", name);
    double v = f->valuedouble;
    if (!(lo_open ? v > lo : v >= lo) || !(v <= hi))
        return BAD_REQUEST(e, name, "'%s' must be in %c%g, %g], got %g", name, lo_open ? '(' : '[', lo, hi, v);
    *out = v;
    return 0;
}

static int get_int(const cJSON *root, const char *name, double lo, double hi, long long *out, bool *present,
                   api_error_t *e) {
    const cJSON *f = field(root, name);
    if (present) *present = f != NULL;
    if (!f) return 0;
    double v = cJSON_IsNumber(f) ? f->valuedouble : NAN;
    if (!cJSON_IsNumber(f) || v != floor(v)) return BAD_REQUEST(e, name, "'%s' must be an integer", name);
    if (v < lo || v > hi) return BAD_REQUEST(e, name, "'%s' must be in [%.0f, %.0f], got %.0f", name, lo, hi, v);
    *out = (long long)v;
    return 0;
}

/* ---------------------------------------------------------------- prompt / messages */

static int ids_from_array(const api_ctx_t *ctx, const cJSON *arr, api_request_t *r, api_error_t *e) {
    int n = cJSON_GetArraySize(arr);
    if (n == 0) return BAD_REQUEST(e, "prompt", "the prompt is empty");
    r->prompt = malloc(sizeof(int32_t) * (size_t)n);
    if (!r->prompt) return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (v != floor(v) || v < 0 || v >= ctx->vocab_size)
            return BAD_REQUEST(e, "prompt", "prompt[%d] is not a token id in [0, %d)", i, ctx->vocab_size);
        r->prompt[i++] = (int32_t)v;
    }
    r->n_prompt = n;
    return 0;
}

static int encode(const api_ctx_t *ctx, const char *text, size_t len, bool add_bos, const char *param,
                  api_request_t *r, api_error_t *e) {
    if (len == 0) return BAD_REQUEST(e, param, "the prompt is empty");
    if (!ctx->tok)
        return BAD_REQUEST(e, param, "this model has no tokenizer.json: send the prompt as an array of token ids");
    spex_err_t err = {0};
    size_t n = 0;
    if (tokenizer_encode(ctx->tok, text, len, add_bos, &r->prompt, &n, &err))
        return BAD_REQUEST(e, param, "cannot tokenize: %s", err.msg);
    if (n == 0) return BAD_REQUEST(e, param, "the prompt is empty");
    r->n_prompt = (int)n;
    return 0;
}

static int parse_prompt(const api_ctx_t *ctx, const cJSON *root, api_request_t *r, api_error_t *e) {
    const cJSON *p = field(root, "prompt");
    if (!p) return BAD_REQUEST(e, "prompt", "'prompt' is required");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) >= 1 && !cJSON_IsNumber(cJSON_GetArrayItem(p, 0))) {
        if (cJSON_GetArraySize(p) > 1)
            return BAD_REQUEST(e, "prompt", "several prompts in one request are not supported; send one per request");
        p = cJSON_GetArrayItem(p, 0);   /* ["text"] or [[ids]] */
    }
    if (cJSON_IsString(p)) {
        bool bos = ctx->tok && tokenizer_bos_id(ctx->tok) >= 0 && tokenizer_add_bos_default(ctx->tok);
        return encode(ctx, p->valuestring, json_str_len(p), bos, "prompt", r, e);
    }
    if (cJSON_IsArray(p)) return ids_from_array(ctx, p, r, e);
    return BAD_REQUEST(e, "prompt", "'prompt' must be a string or an array of token ids");
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
        m[i] = (chat_message_t){role->valuestring, content[i], len};
    }
    spex_err_t err = {0};
    int32_t bos = ctx->tok ? tokenizer_bos_id(ctx->tok) : -1;
    size_t bos_len = 0;
    const char *bos_bytes = bos >= 0 ? tokenizer_token_bytes(ctx->tok, bos, &bos_len) : NULL;
    char bos_str[256] = "";
    if (bos_bytes && bos_len < sizeof bos_str) memcpy(bos_str, bos_bytes, bos_len), bos_str[bos_len] = '\0';
    size_t text_len = 0;
    char *text = chat_render_len(m, n, bos_str, true, &text_len, &err);
    if (!text) { BAD_REQUEST(e, "messages", "%s", err.msg); goto done; }
    rc = encode(ctx, text, text_len, false, "messages", r, e);
    free(text);
done:
    for (int i = 0; content && i < n; i++) free(content[i]);
    free(content);
    free(m);
    return rc;
}

static int parse_messages(const api_ctx_t *ctx, const cJSON *root, api_request_t *r, api_error_t *e) {
    const cJSON *msgs = field(root, "messages");
    if (!msgs) return BAD_REQUEST(e, "messages", "'messages' is required");
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
        return BAD_REQUEST(e, "messages", "'messages' must be a non-empty array");
    return render_chat(ctx, msgs, r, e);
}

/* ---------------------------------------------------------------- parameters */

static int parse_stop(const cJSON *root, api_request_t *r, api_error_t *e) {
    const cJSON *st = field(root, "stop");
    if (!st) return 0;
    if (cJSON_IsString(st)) {
        if (!st->valuestring[0]) return BAD_REQUEST(e, "stop", "stop strings must not be empty");
        if (json_str_len(st) != strlen(st->valuestring))
            return BAD_REQUEST(e, "stop", "stop strings must not hold a NUL character");
        if (!(r->stop[r->n_stop++] = strdup(st->valuestring))) return api_fail(e, 500, "server_error", NULL, NULL, "oom");
        return 0;
    }
    if (!cJSON_IsArray(st)) return BAD_REQUEST(e, "stop", "'stop' must be a string or an array of strings");
    if (cJSON_GetArraySize(st) > SCHED_MAX_STOP)
        return BAD_REQUEST(e, "stop", "at most %d stop strings are allowed", SCHED_MAX_STOP);
    const cJSON *it;
    cJSON_ArrayForEach(it, st) {
        if (!cJSON_IsString(it) || !it->valuestring[0])
            return BAD_REQUEST(e, "stop", "'stop' must hold non-empty strings");
        if (json_str_len(it) != strlen(it->valuestring))
            return BAD_REQUEST(e, "stop", "stop strings must not hold a NUL character");
        if (strlen(it->valuestring) > SCHED_MAX_STOP_LEN)
            return BAD_REQUEST(e, "stop", "stop strings are limited to %d bytes", SCHED_MAX_STOP_LEN);
        if (!(r->stop[r->n_stop++] = strdup(it->valuestring))) return api_fail(e, 500, "server_error", NULL, NULL, "oom");
    }
    return 0;
}

static uint64_t random_seed(void) {
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) {   /* fall back to the clock */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec;
    }
    return s;
}

static int parse_sampling(const cJSON *root, const api_defaults_t *d, api_request_t *r, api_error_t *e) {
    sampling_params_t *sp = &r->params.sampling;
    double temp = d->temperature, top_p = d->top_p > 0 ? d->top_p : 1;
    long long top_k = d->top_k, seed = 0;
    bool have_seed = false;
    if (get_number(root, "temperature", 0, 2, false, &temp, NULL, e) ||
        get_number(root, "top_p", 0, 1, true, &top_p, NULL, e) ||
        get_int(root, "top_k", -1, 1e9, &top_k, NULL, e) ||
        get_int(root, "seed", -9.2e18, 9.2e18, &seed, &have_seed, e))
        return -1;
    sp->temperature = (float)temp;
    /* top_p is in (0, 1] as a double; a tiny one such as 1e-300 is 0 as a float:
     * keep it positive (only the most likely token) rather than refuse it */
    sp->top_p = fmaxf((float)top_p, FLT_MIN);
    sp->top_k = top_k < 0 ? 0 : (int)top_k;
    sp->seed = have_seed ? (uint64_t)seed : d->have_seed ? d->seed : random_seed();
    return 0;
}

static int parse_limits(const cJSON *root, const api_defaults_t *d, api_request_t *r, api_error_t *e) {
    long long max_tokens = 0, n = 1, spec_k = -1;
    bool have_max = false, have_mct = false;
    if (get_int(root, "max_tokens", 1, 1e9, &max_tokens, &have_max, e) ||
        get_int(root, "max_completion_tokens", 1, 1e9, &max_tokens, &have_mct, e) ||
        get_int(root, "n", 1, 1e9, &n, NULL, e) || get_int(root, "spec_k", 0, SPEX_MAX_SPEC_K, &spec_k, NULL, e))
        return -1;
    if (n != 1) return BAD_REQUEST(e, "n", "only n = 1 is supported");
    if (!have_max && !have_mct) max_tokens = d->max_tokens > 0 ? d->max_tokens : r->kind == API_COMPLETION ? 16 : 0;
    r->params.max_tokens = (int)max_tokens;
    r->params.spec_k = (int)spec_k;
    return 0;
}

static int parse_flags(const cJSON *root, api_request_t *r, api_error_t *e) {
    if (get_bool(root, "stream", &r->stream, e) || get_bool(root, "return_tokens", &r->return_tokens, e)) return -1;
    const cJSON *so = field(root, "stream_options");
    if (!so) return 0;
    if (!cJSON_IsObject(so)) return BAD_REQUEST(e, "stream_options", "'stream_options' must be an object");
    return get_bool(so, "include_usage", &r->include_usage, e) ||
                   get_bool(so, "continuous_usage_stats", &r->continuous_usage, e)
               ? -1
               : 0;
}

static int check_model(const api_ctx_t *ctx, const cJSON *root, api_error_t *e) {
    const cJSON *m = field(root, "model");
    if (!m || !ctx->model_name) return 0;
    if (!cJSON_IsString(m)) return BAD_REQUEST(e, "model", "'model' must be a string");
    if (!json_str_is(m, ctx->model_name))
        return api_fail(e, 404, "invalid_request_error", "model", "model_not_found",
                        "the model '%.200s' does not exist; this server serves '%s'", m->valuestring, ctx->model_name);
    return 0;
}

int api_parse_request(const api_ctx_t *ctx, api_kind_t kind, const cJSON *root, const api_defaults_t *d,
                      api_request_t *r, api_error_t *e) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    if (!cJSON_IsObject(root)) return BAD_REQUEST(e, NULL, "the request body must be a JSON object");
    if (check_model(ctx, root, e) || parse_flags(root, r, e) || parse_limits(root, d, r, e) ||
        parse_sampling(root, d, r, e) || parse_stop(root, r, e) ||
        (kind == API_CHAT ? parse_messages(ctx, root, r, e) : parse_prompt(ctx, root, r, e))) {
        api_request_free(r);
        return -1;
    }
    r->params.prompt = r->prompt;
    r->params.n_prompt = r->n_prompt;
    r->params.stop = (const char *const *)r->stop;
    r->params.n_stop = r->n_stop;
    return 0;
}

void api_request_free(api_request_t *r) {
    free(r->prompt);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- errors */

void api_submit_error(sched_status_t st, const char *param, const char *msg, api_error_t *e) {
    switch (st) {
    case SCHED_INVALID: api_fail(e, 400, "invalid_request_error", param, "invalid_value", "%s", msg); break;
    case SCHED_QUEUE_FULL: api_fail(e, 429, "rate_limit_error", NULL, "queue_full", "%s", msg); break;
    case SCHED_UNAVAILABLE: api_fail(e, 503, "server_error", NULL, "unavailable", "%s", msg); break;
    default: api_fail(e, 500, "server_error", NULL, "internal_error", "%s", msg); break;
    }
}

bool api_result_error(const sched_result_t *r, api_error_t *e) {
    if (!strcmp(r->finish_reason, "error")) {
        api_fail(e, 500, "server_error", NULL, "engine_error", "generation failed: %s", r->error);
        return true;
    }
    if (!strcmp(r->finish_reason, "cancelled")) {
        if (r->shutdown)
            api_fail(e, 503, "server_error", NULL, "shutting_down",
                     "the server is shutting down; the request was cancelled after %d tokens", r->n_tokens);
        else
            api_fail(e, 500, "server_error", NULL, "cancelled", "the request was cancelled");
        return true;
    }
    return false;
}

void api_error_json(strbuf_t *b, const api_error_t *e) {
    sb_str(b, "{\"error\":{\"message\":");
    sb_json_cstr(b, e->message);
    sb_str(b, ",\"type\":");
    sb_json_cstr(b, e->type);
    sb_str(b, ",\"param\":");
    sb_json_cstr(b, e->param);
    sb_str(b, ",\"code\":");
    sb_json_cstr(b, e->code);
    sb_str(b, "}}");
}

/* ---------------------------------------------------------------- responses */

void api_new_id(api_kind_t kind, char *out, size_t len) {
    unsigned char r[12];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        uint64_t s = random_seed();
        for (size_t i = 0; i < sizeof r; i++) r[i] = (unsigned char)(s >> (8 * (i % 8))) ^ (unsigned char)i;
    }
    int k = snprintf(out, len, "%s", kind == API_CHAT ? "chatcmpl-" : "cmpl-");
    for (size_t i = 0; i < sizeof r && k + 2 < (int)len; i++) k += snprintf(out + k, len - (size_t)k, "%02x", r[i]);
}

static void usage_json(strbuf_t *b, int prompt, int completion) {
    sb_printf(b, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}", prompt, completion,
              prompt + completion);
}

static void head_json(strbuf_t *b, const api_request_t *rq, const char *id, long created, const char *model,
                      bool chunk) {
    const char *object = rq->kind == API_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                              : "text_completion";
    sb_str(b, "{\"id\":");
    sb_json_cstr(b, id);
    sb_printf(b, ",\"object\":\"%s\",\"created\":%ld,\"model\":", object, created);
    sb_json_cstr(b, model);
}

void api_response_json(strbuf_t *b, const api_request_t *rq, const char *id, long created, const char *model,
                       const sched_result_t *r) {
    head_json(b, rq, id, created, model, false);
    sb_str(b, ",\"choices\":[{\"index\":0,");
    if (rq->kind == API_CHAT) {
        sb_str(b, "\"message\":{\"role\":\"assistant\",\"content\":");
        sb_json_str(b, r->text, r->text_len);
        sb_str(b, "}");
    } else {
        sb_str(b, "\"text\":");
        sb_json_str(b, r->text, r->text_len);
    }
    if (rq->return_tokens) {
        sb_str(b, ",\"tokens\":");
        sb_json_ids(b, r->tokens, r->n_tokens);
    }
    sb_str(b, ",\"logprobs\":null,\"finish_reason\":");
    sb_json_cstr(b, r->finish_reason);
    sb_str(b, "}],");
    usage_json(b, r->prompt_tokens, r->n_tokens);
    sb_str(b, "}");
}

void api_chunk_sse(strbuf_t *b, const api_request_t *rq, const char *id, long created, const char *model,
                   const char *text, size_t len, bool role, const char *finish_reason, int usage_tokens) {
    sb_str(b, "data: ");
    head_json(b, rq, id, created, model, true);
    sb_str(b, ",\"choices\":[{\"index\":0,");
    if (rq->kind == API_CHAT) {
        sb_str(b, "\"delta\":{");
        if (role) sb_str(b, "\"role\":\"assistant\"");
        if (text) {
            sb_str(b, role ? ",\"content\":" : "\"content\":");
            sb_json_str(b, text, len);
        }
        sb_str(b, "}");
    } else {
        sb_str(b, "\"text\":");
        sb_json_str(b, text ? text : "", text ? len : 0);
    }
    sb_str(b, ",\"logprobs\":null,\"finish_reason\":");
    sb_json_cstr(b, finish_reason);
    sb_str(b, "}]");
    if (usage_tokens >= 0) {
        sb_str(b, ",");
        usage_json(b, rq->n_prompt, usage_tokens);
    }
    sb_str(b, "}\n\n");
}

void api_usage_chunk_sse(strbuf_t *b, const api_request_t *rq, const char *id, long created, const char *model,
                         int completion_tokens) {
    sb_str(b, "data: ");
    head_json(b, rq, id, created, model, true);
    sb_str(b, ",\"choices\":[],");
    usage_json(b, rq->n_prompt, completion_tokens);
    sb_str(b, "}\n\n");
}

int api_parse_body(const api_ctx_t *ctx, api_kind_t kind, const char *body, size_t len, api_request_t *out,
                   api_error_t *e) {
    /* json_parse_doc reports where parsing stopped through its own out
     * parameters; cJSON_GetErrorPtr() is process-global, so racy across handlers */
    const char *why = NULL;
    size_t at = 0;
    cJSON *root = json_parse_doc(body ? body : "", len, &why, &at);
    if (!root)
        return api_fail(e, 400, "invalid_request_error", NULL, "invalid_json", "the body is %s (error near byte %zu)",
                        why, at);
    api_defaults_t d = ctx->defaults ? *ctx->defaults : (api_defaults_t){.temperature = 1.0f};
    int bad = api_parse_request(ctx, kind, root, &d, out, e);
    cJSON_Delete(root);
    return bad;
}
