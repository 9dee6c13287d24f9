/* api_fields.h - the request fields OpenAI defines that Spex does not
 * implement: each gets a 400 naming it instead of being silently ignored.
 *
 * Accepted with a harmless value (the one meaning "nothing special"):
 *   best_of 1, suffix "", response_format {"type": "text"}, modalities ["text"],
 *   store false, service_tier "auto" / "default", tool_choice "none";
 * accepted as identifiers that do not change the output: user,
 * safety_identifier, prompt_cache_key, prompt_cache_retention (strings; the
 * prefix cache is automatic, its retention LRU within --prefix-cache-mb).
 * Everything else on the list below is a 400, as is a field that OpenAI
 * defines only on the other endpoint (echo on chat, messages on completions...).
 * Fields OpenAI does not define at all are ignored, as before (docs/serving.md). */
#ifndef SPEX_API_FIELDS_H
#define SPEX_API_FIELDS_H

#include <cjson/cJSON.h>

#include "server/api.h"

/* 0, or -1 with e filled (400, param = the field). */
int api_check_fields(api_kind_t kind, const cJSON *root, api_error_t *e);

#endif
