/* api.h - the OpenAI request and response schema, shared by `spex serve`
 * (HTTP) and `spex batch` (JSONL lines).
 *
 * Requests (POST /v1/completions, /v1/chat/completions, or one batch line):
 *   prompt       completions: a string, an array of token ids, or an array of
 *                several of either kind (one choice set per prompt, in order)
 *   messages     chat: [{role: system|developer|user|assistant, content: string
 *                or [{type: "text", text}...]}], rendered with ctx->chat_template
 *                (chat_template.h) or the built-in format
 *                (developer is OpenAI's newer name for system)
 *   max_tokens / max_completion_tokens   integer >= 0 (both given: they must
 *                agree); default 16 for completions (OpenAI's), as many as fit for chat;
 *                0 only with echo: the prompt is scored, not continued (the answer
 *                is the echoed prompt, with logprobs its tokens', finish_reason "length")
 *   temperature  [0, 2], default 1 (OpenAI's); 0 = greedy
 *   top_p (0, 1], top_k >= 0 (0 or -1 = off), seed (integer; default random;
 *                choice j of n uses seed + j)
 *   presence_penalty, frequency_penalty [-2, 2]; logit_bias {"id": [-100, 100]}
 *                (coordinator/decode/logit_adjust.h)
 *   logprobs     completions: integer 0..5 (alternatives per token); chat:
 *                boolean, with top_logprobs 0..20 (coordinator/decode/token_logprobs.h)
 *   echo         completions: the prompt's text before the completion; with
 *                logprobs, the prompt tokens' logprobs too (the first one's null)
 *   n            1..128 choices per prompt (prompts x n <= 128)
 *   stop         a string or an array of up to 16 strings
 *   stream, stream_options.include_usage
 *   model        if given, must name the served model (else 404)
 * Extensions: spec_k (lower the server's speculation depth for this request),
 * return_tokens (add the generated token ids to the choice),
 * stream_options.continuous_usage_stats (usage in every chunk, as vLLM).
 * OpenAI fields Spex does not implement are a 400 naming them
 * (server/api_fields.h); fields OpenAI does not define are ignored; a known
 * field of the wrong type is a 400 naming it (null counts as absent).
 *
 * Errors are OpenAI's shape: {"error":{"message","type","param","code"}}. */
#ifndef SPEX_API_H
#define SPEX_API_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "coordinator/decode/logit_adjust.h"
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
    const struct chat_template *chat_template;   /* the model's Jinja template; NULL: the built-in format */
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

#define API_MAX_CHOICES 128

/* One prompt of a request. */
typedef struct api_prompt {
    int32_t *ids;
    int n;
    char *echo;                  /* echo: the prompt's text (malloc'ed), else NULL */
    size_t echo_len;
    int echo_skip;               /* leading ids whose text is not in echo (a BOS added to a string prompt) */
} api_prompt_t;

typedef struct api_request {
    api_kind_t kind;
    api_prompt_t *prompts;       /* [n_prompts] */
    int n_prompts;
    int n;                       /* choices per prompt; choice c answers prompt c / n */
    int32_t *prompt;             /* prompts[0] (the only one for chat) */
    int n_prompt;
    char *stop[SCHED_MAX_STOP];
    int n_stop;
    logit_bias_entry_t *bias;    /* [params.adjust.n_bias] */
    sched_params_t params;       /* choice 0's; points into prompts / stop / bias */
    bool stream, include_usage, continuous_usage, return_tokens, echo;
} api_request_t;

/* Validate and tokenize one request object. On failure fills e and returns -1. */
int api_parse_request(const api_ctx_t *ctx, api_kind_t kind, const cJSON *root, const api_defaults_t *d,
                      api_request_t *out, api_error_t *e);
void api_request_free(api_request_t *r);
/* Choices in the response: n_prompts * n. */
int api_n_choices(const api_request_t *r);
/* The scheduler parameters of choice c (pointing into r). */
void api_choice_params(const api_request_t *r, int c, sched_params_t *out);
/* usage.prompt_tokens: each prompt counted once (n choices share it). */
int api_prompt_tokens(const api_request_t *r);

/* A 400 invalid_request_error naming param (printf-style message); returns -1. */
#define API_BAD_REQUEST(e, param, ...) api_fail(e, 400, "invalid_request_error", param, "invalid_value", __VA_ARGS__)
/* root's member `name`, or NULL when absent or null. */
const cJSON *api_field(const cJSON *root, const char *name);

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

/* Responses and SSE chunks: server/api_response.h. */

#endif
