/* api_prompt.h - what a request asks the model to continue: completions'
 * `prompt` (one or several prompts, text or token ids, with the text to echo)
 * and chat's `messages` (roles, text parts, rendered with
 * coordinator/serve/chat.h and tokenized). Fills api_request_t.prompts;
 * r->n and r->echo must be parsed first. */
#ifndef SPEX_API_PROMPT_H
#define SPEX_API_PROMPT_H

#include <cjson/cJSON.h>

#include "server/api.h"

/* 0, or -1 with e filled (400 naming the field, 500 when out of memory). */
int api_parse_prompt(const api_ctx_t *ctx, const cJSON *root, api_request_t *r, api_error_t *e);
int api_parse_messages(const api_ctx_t *ctx, const cJSON *root, api_request_t *r, api_error_t *e);

#endif
