/* api_response.h - OpenAI response objects and SSE chunks for a parsed
 * request (server/api.h): one choice per scheduler request, indexed in order
 * (prompt by prompt, n choices each), usage summed over the choices (each
 * prompt's tokens counted once), logprobs per server/logprobs_json.h, the
 * echoed prompt (completions, echo) before a choice's text. */
#ifndef SPEX_API_RESPONSE_H
#define SPEX_API_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

#include "server/api.h"

/* A complete (non-streaming) response: res[c] is choice c's result. */
void api_response_json(strbuf_t *b, const api_request_t *rq, const tokenizer_t *tok, const char *id, long created,
                       const char *model, const sched_result_t *const *res, int n_res);

/* What one SSE chunk says about one choice. */
typedef struct api_delta {
    int index;                   /* the choice */
    const char *text;            /* NULL: no content member (chat); completions then send "" */
    size_t len;
    bool role;                   /* chat: the first chunk of a choice carries role "assistant" */
    const char *finish_reason;   /* NULL while running */
    const sched_token_t *toks;   /* tokens of this chunk, for logprobs (when the request asked) */
    const token_logprob_t *lps;
    int n_toks;
    size_t prev_end;             /* text end of the token before toks[0] (completions' text_offset) */
} api_delta_t;

/* One SSE event "data: {chunk}\n\n"; usage_tokens >= 0 adds usage with that
 * many completion tokens (stream_options.continuous_usage_stats). */
void api_chunk_sse(strbuf_t *b, const api_request_t *rq, const tokenizer_t *tok, const char *id, long created,
                   const char *model, const api_delta_t *d, int usage_tokens);
/* Completions with echo: the chunk of choice `index` that echoes its prompt;
 * with prompt_lps (echo with logprobs, [n_prompt]) its tokens' logprobs, the
 * first null, text_offset from 0; else "logprobs": null. */
void api_echo_chunk_sse(strbuf_t *b, const api_request_t *rq, const tokenizer_t *tok, const char *id, long created,
                        const char *model, int index, const token_logprob_t *prompt_lps, int usage_tokens);
/* The usage-only chunk (choices: []) sent last when include_usage. */
void api_usage_chunk_sse(strbuf_t *b, const api_request_t *rq, const char *id, long created, const char *model,
                         int completion_tokens);

#endif
