/* fuzz_http_request.c - libFuzzer harness for the body of POST
 * /v1/completions and /v1/chat/completions: api_parse_body() (server/api.c),
 * the function server/http.c calls on a received body, without a socket. The
 * input's first byte picks the route (even: completions, odd: chat), the rest
 * is the body: JSON with string lengths (server/json_str.c), the OpenAI schema,
 * chat rendering and tokenization with the shipped model's tokenizer
 * (models/austen-moe). Every body gets a request or a 4xx error with a
 * message. Seeds: tests/fuzz/corpus/http_request/, dictionary
 * tests/fuzz/dict/request.dict. */
#include <stddef.h>
#include <stdint.h>

#include "coordinator/tokenizer/tokenizer.h"
#include "fuzz_util.h"
#include "server/api.h"

#ifndef SPEX_MODEL_DIR
#error "SPEX_MODEL_DIR must name models/austen-moe"
#endif

static tokenizer_t *tok;
static api_defaults_t defaults = {.temperature = 1.0f};
static api_ctx_t ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    spex_err_t err = {{0}};
    if (!(tok = tokenizer_load(SPEX_MODEL_DIR, &err))) {
        fprintf(stderr, "fuzz_http_request: %s\n", err.msg);
        abort();
    }
    ctx = (api_ctx_t){.tok = tok, .model_name = "austen-moe", .vocab_size = tokenizer_vocab_size(tok),
                      .defaults = &defaults, .context = 512};
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n == 0) return 0;
    api_kind_t kind = data[0] & 1 ? API_CHAT : API_COMPLETION;
    api_request_t rq;
    api_error_t e;
    if (api_parse_body(&ctx, kind, (const char *)data + 1, n - 1, &rq, &e) == 0) {
        if (rq.n_prompt < 1) abort();   /* a request always has a prompt */
        for (int i = 0; i < rq.n_prompt; i++)
            if (rq.prompt[i] < 0 || rq.prompt[i] >= ctx.vocab_size) abort();
        api_request_free(&rq);
    } else {
        if (e.status < 400 || e.status > 499 || !e.message[0]) abort();
        strbuf_t b = {0};
        api_error_json(&b, &e);
        free(sb_take(&b, NULL));
    }
    return 0;
}
