/* api.h - the OpenAI request and response schema, shared by `spex serve`
 * (HTTP) and `spex batch` (JSONL lines).
 *
 * Requests (POST /v1/completions, /v1/chat/completions, or one batch line):
 *   prompt       completions: a string, an array of token ids, or an array
 *                holding exactly one of those (several prompts: 400)
 *   messages     chat: [{role: system|user|assistant, content: string or
 *                [{type: "text", text}...]}], rendered with coordinator/serve/chat.h
 *   max_tokens / max_completion_tokens   integer >= 1; default 16 for
 *                completions (OpenAI's), as many as fit for chat
 *   temperature  [0, 2], default 1 (OpenAI's); 0 = greedy
 *   top_p (0, 1], top_k >= 0 (0 or -1 = off), seed (integer; default random)
 *   stop         a string or an array of up to 16 strings
 *   stream, stream_options.include_usage
 *   n            must be 1
 *   model        if given, must name the served model (else 404)
 * Extensions: spec_k (lower the server's speculation depth for this request),
 * return_tokens (add the generated token ids to the choice),
 * stream_options.continuous_usage_stats (usage in every chunk, as vLLM).
 * Unknown fields are ignored; a known field of the wrong type is a 400 naming
 * it (null counts as absent).
 *
 * Errors are OpenAI's shape: {"error":{"message","type","param","code"}}. */
#ifndef SPEX_API_H
#define SPEX_API_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "coordinator/serve/scheduler.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "core/strbuf.h"

typedef enum api_kind { API_COMPLETION, API_CHAT } api_kind_t;

typedef struct api_ctx {
    scheduler_t *sched;
    const tokenizer_t *tok;      /* required for text prompts and chat */
    const char *model_name;      /* NULL: the request's "model" is not checked (batch) */
    int vocab_size;
    const struct api_defaults *defaults;   /* serve: what requests leave out (NULL: OpenAI's, temperature 1) */
    int context;                 /* the model's context length (/v1/models max_model_len) */
} api_ctx_t;

/* Defaults for fields a request leaves out. */
typedef struct api_defaults {
    int max_tokens;              /* 0 = OpenAI's: 16 for completions, as many as fit for chat */
    float temperature;           /* OpenAI: 1 */
    float top_p;                 /* 0 = 1 (off) */
    int top_k;                   /* 0 = off */
    bool have_seed;              /* else a random seed per request */
    uint64_t seed;
} api_defaults_t;

typedef struct api_error {
    int status;                  /* HTTP status */
    const char *type;            /* "invalid_request_error", "rate_limit_error", "server_error" */
    const char *param;           /* offending field or NULL */
    const char *code;            /* short machine-readable code or NULL */
    char message[1024];
} api_error_t;

typedef struct api_request {
    api_kind_t kind;
    int32_t *prompt;
    int n_prompt;
    char *stop[SCHED_MAX_STOP];
    int n_stop;
    sched_params_t params;       /* points into prompt / stop */
    bool stream, include_usage, continuous_usage, return_tokens;
} api_request_t;

/* Validate and tokenize one request object. On failure fills e and returns -1. */
int api_parse_request(const api_ctx_t *ctx, api_kind_t kind, const cJSON *root, const api_defaults_t *d,
                      api_request_t *out, api_error_t *e);
void api_request_free(api_request_t *r);

/* A request body (len bytes, need not be NUL-terminated) as a request: one JSON
 * value (server/json_str.h: string lengths kept, nothing after it), then the
 * schema with ctx->defaults (OpenAI's when NULL). The tree lives only here.
 * On failure fills e (400 invalid_json naming the byte, or the schema's error). */
int api_parse_body(const api_ctx_t *ctx, api_kind_t kind, const char *body, size_t len, api_request_t *out,
                   api_error_t *e);

/* printf into e->message and set the rest; returns -1. */
int api_fail(api_error_t *e, int status, const char *type, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* The error a failed submission maps to (400, 429, 503, 500). */
void api_submit_error(sched_status_t st, const char *param, const char *msg, api_error_t *e);
/* The error for a finished request that did not complete normally (shutdown:
 * 503, engine failure: 500); returns false when the result is a normal one. */
bool api_result_error(const sched_result_t *r, api_error_t *e);

void api_error_json(strbuf_t *b, const api_error_t *e);
/* "cmpl-<24 hex>" / "chatcmpl-<24 hex>" */
void api_new_id(api_kind_t kind, char *out, size_t len);

/* A complete (non-streaming) response object. */
void api_response_json(strbuf_t *b, const api_request_t *rq, const char *id, long created, const char *model,
                       const sched_result_t *r);

/* One SSE event "data: {chunk}\n\n". text may be NULL (no content); role
 * adds the assistant role (first chat chunk); finish_reason NULL while
 * running; usage_tokens >= 0 adds usage with that many completion tokens. */
void api_chunk_sse(strbuf_t *b, const api_request_t *rq, const char *id, long created, const char *model,
                   const char *text, size_t len, bool role, const char *finish_reason, int usage_tokens);
/* The usage-only chunk (choices: []) sent last when include_usage. */
void api_usage_chunk_sse(strbuf_t *b, const api_request_t *rq, const char *id, long created, const char *model,
                         int completion_tokens);

#endif
