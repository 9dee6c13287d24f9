/* logprobs_json.h - the `logprobs` member of a choice, in OpenAI's two shapes:
 *   completions: {"tokens": [...], "token_logprobs": [...],
 *                 "top_logprobs": [{"tok": lp, ...}, ...], "text_offset": [...]}
 *   chat:        {"content": [{"token", "logprob", "bytes": [...],
 *                 "top_logprobs": [{"token", "logprob", "bytes"}...]}...], "refusal": null}
 * A token's text is its bytes when they are valid UTF-8 on their own, else
 * "bytes:\xNN..." (OpenAI's spelling for part of a character); chat's "bytes"
 * are always the exact bytes. */
#ifndef SPEX_LOGPROBS_JSON_H
#define SPEX_LOGPROBS_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "coordinator/decode/token_logprobs.h"
#include "coordinator/serve/scheduler.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "core/strbuf.h"

/* Where a completion's tokens sit in the choice's text, for text_offset:
 * token i starts at base + min(end of token i-1, limit); the token before
 * toks[0] ends at prev_end. */
typedef struct logprobs_offsets {
    size_t base;        /* bytes before the completion (the echoed prompt) */
    size_t prev_end;
    size_t limit;       /* the completion's final length (SIZE_MAX while streaming) */
    bool first_null;    /* the first token has no logprob (echo: the prompt's first token): null */
} logprobs_offsets_t;

void logprobs_json_completion(strbuf_t *b, const tokenizer_t *tok, const sched_token_t *toks,
                              const token_logprob_t *lps, int n, const logprobs_offsets_t *off);
void logprobs_json_chat(strbuf_t *b, const tokenizer_t *tok, const sched_token_t *toks, const token_logprob_t *lps,
                        int n);

#endif
