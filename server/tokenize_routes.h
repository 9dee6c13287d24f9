/* tokenize_routes.h - POST /tokenize and POST /detokenize of `spex serve`, in
 * llama-server's shapes, so its clients and scripts work unchanged:
 *
 *   /tokenize    {"content": "text", "add_special": false, "parse_special": true,
 *                 "with_pieces": false}
 *             -> {"tokens": [ids]}, or with with_pieces
 *                {"tokens": [{"id": 123, "piece": "text"}, ...]} where a piece
 *                that is not valid UTF-8 on its own is a list of its bytes
 *   /detokenize  {"tokens": [ids]} -> {"content": "text"}
 *
 * add_special adds BOS exactly when a completions prompt string gets it (the
 * tokenizer has a BOS and tokenizer_config.json's add_bos_token), so the ids
 * are the ones /v1/completions would run. Special tokens written in the text
 * are always recognised (parse_special false is a 400: the tokenizer cannot
 * treat them as plain text). /detokenize keeps special tokens (BOS shows as
 * its text), so detokenize(tokenize(x)) == x. A wrong type is a 400 naming
 * the field, as in server/api.h. */
#ifndef SPEX_TOKENIZE_ROUTES_H
#define SPEX_TOKENIZE_ROUTES_H

#include <stddef.h>

#include "core/strbuf.h"
#include "server/api.h"

/* Answer one request body (body[len], need not be NUL-terminated): 0 with the
 * JSON response in out, or -1 with e filled (400, or 500 out of memory). */
int tokenize_answer(const api_ctx_t *api, const char *body, size_t len, strbuf_t *out, api_error_t *e);
int detokenize_answer(const api_ctx_t *api, const char *body, size_t len, strbuf_t *out, api_error_t *e);

#endif
