/* tokenize_routes.c - see tokenize_routes.h. */
#include "tokenize_routes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/utf8.h"

#define BAD(e, param, ...) api_fail(e, 400, "invalid_request_error", param, "invalid_value", __VA_ARGS__)

/* The body as a JSON object, or NULL with e filled. */
static cJSON *parse_body(const char *body, size_t len, api_error_t *e) {
    const char *end = body;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        api_fail(e, 400, "invalid_request_error", NULL, "invalid_json", "the body is not valid JSON (error near byte %ld)",
                 end ? (long)(end - body) : 0L);
        return NULL;
    }
    if (cJSON_IsObject(root)) return root;
    cJSON_Delete(root);
    BAD(e, NULL, "the request body must be a JSON object");
    return NULL;
}

/* An optional boolean field (absent or null: dflt). */
static int get_flag(const cJSON *root, const char *name, bool dflt, bool *out, api_error_t *e) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, name);
    *out = dflt;
    if (!f || cJSON_IsNull(f)) return 0;
    if (!cJSON_IsBool(f)) return BAD(e, name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(f);
    return 0;
}

static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = utf8_valid_len((const unsigned char *)s + i, n - i))) return false;
    return true;
}

/* {"id": 12, "piece": "text" | [bytes]} */
static void piece_json(strbuf_t *b, const tokenizer_t *tok, int32_t id) {
    size_t len = 0;
    const char *p = tokenizer_token_bytes(tok, id, &len);
    sb_printf(b, "{\"id\":%d,\"piece\":", (int)id);
    if (!p) p = "", len = 0;
    if (valid_utf8(p, len)) {
        sb_json_str(b, p, len);
    } else {
        for (size_t i = 0; i < len; i++) sb_printf(b, "%c%u", i ? ',' : '[', (unsigned char)p[i]);
        sb_str(b, len ? "]" : "[]");
    }
    sb_str(b, "}");
}

static void tokens_json(strbuf_t *b, const tokenizer_t *tok, const int32_t *ids, size_t n, bool pieces) {
    if (!pieces) {
        sb_str(b, "{\"tokens\":");
        sb_json_ids(b, ids, (int)n);
        sb_str(b, "}");
        return;
    }
    sb_str(b, "{\"tokens\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) sb_str(b, ",");
        piece_json(b, tok, ids[i]);
    }
    sb_str(b, "]}");
}

static int tokenize_fields(const api_ctx_t *api, const cJSON *root, strbuf_t *out, api_error_t *e) {
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(root, "content");
    bool add_special, parse_special, pieces;
    if (!cJSON_IsString(content)) return BAD(e, "content", "'content' must be a string");
    if (get_flag(root, "add_special", false, &add_special, e) || get_flag(root, "parse_special", true, &parse_special, e) ||
        get_flag(root, "with_pieces", false, &pieces, e))
        return -1;
    if (!parse_special)
        return BAD(e, "parse_special", "'parse_special': false is not supported: special tokens in the text are "
                                       "always recognised");
    bool bos = add_special && tokenizer_bos_id(api->tok) >= 0 && tokenizer_add_bos_default(api->tok);
    int32_t *ids = NULL;
    size_t n = 0;
    spex_err_t err = {0};
    if (tokenizer_encode(api->tok, content->valuestring, strlen(content->valuestring), bos, &ids, &n, &err))
        return BAD(e, "content", "cannot tokenize: %s", err.msg);
    tokens_json(out, api->tok, ids, n, pieces);
    free(ids);
    return 0;
}

/* The ids of "tokens", malloc'ed (NULL for an empty array), or -1 with e filled. */
static int ids_of(const api_ctx_t *api, const cJSON *root, int32_t **ids, int *n, api_error_t *e) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "tokens"), *it;
    if (!cJSON_IsArray(t)) return BAD(e, "tokens", "'tokens' must be an array of token ids");
    *n = cJSON_GetArraySize(t);
    *ids = *n ? malloc(sizeof(int32_t) * (size_t)*n) : NULL;
    if (*n && !*ids) return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    int i = 0;
    cJSON_ArrayForEach(it, t) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (v != floor(v) || v < 0 || v >= api->vocab_size) {
            free(*ids);
            return BAD(e, "tokens", "tokens[%d] is not a token id in [0, %d)", i, api->vocab_size);
        }
        (*ids)[i++] = (int32_t)v;
    }
    return 0;
}

static int detokenize_fields(const api_ctx_t *api, const cJSON *root, strbuf_t *out, api_error_t *e) {
    int32_t *ids = NULL;
    int n = 0;
    if (ids_of(api, root, &ids, &n, e)) return -1;
    size_t len = 0;
    spex_err_t err = {0};
    char *text = tokenizer_decode(api->tok, ids, (size_t)n, false, &len, &err);
    free(ids);
    if (!text) return BAD(e, "tokens", "cannot detokenize: %s", err.msg);
    sb_str(out, "{\"content\":");
    sb_json_str(out, text, len);
    sb_str(out, "}");
    free(text);
    return 0;
}

typedef int (*fields_fn)(const api_ctx_t *api, const cJSON *root, strbuf_t *out, api_error_t *e);

static int answer(const api_ctx_t *api, const char *body, size_t len, fields_fn fn, strbuf_t *out, api_error_t *e) {
    if (!api->tok) return BAD(e, NULL, "this model has no tokenizer.json");
    cJSON *root = parse_body(body, len, e);
    if (!root) return -1;
    int rc = fn(api, root, out, e);
    cJSON_Delete(root);
    if (rc == 0 && out->oom) return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    return rc;
}

int tokenize_answer(const api_ctx_t *api, const char *body, size_t len, strbuf_t *out, api_error_t *e) {
    return answer(api, body, len, tokenize_fields, out, e);
}

int detokenize_answer(const api_ctx_t *api, const char *body, size_t len, strbuf_t *out, api_error_t *e) {
    return answer(api, body, len, detokenize_fields, out, e);
}
