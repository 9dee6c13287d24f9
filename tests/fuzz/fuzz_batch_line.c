/* fuzz_batch_line.c - libFuzzer harness for one input line of `spex batch`
 * (cli/cmd_batch.c): the line as one JSON value (server/json_str.c), its id
 * keyed as written (cli/json_raw.c json_raw_key: numbers verbatim, strings in
 * cJSON's spelling through NUL bytes) and the request schema (server/api.c,
 * completion or chat by the presence of "messages", seeded by the id as batch
 * does), tokenized with the shipped model's tokenizer (models/austen-moe).
 * The same parse reads ids back from an output file when resuming. Seeds:
 * tests/fuzz/corpus/batch_line/, dictionary tests/fuzz/dict/request.dict. */
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "cli/json_raw.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "fuzz_util.h"
#include "server/api.h"
#include "server/json_str.h"

#ifndef SPEX_MODEL_DIR
#error "SPEX_MODEL_DIR must name models/austen-moe"
#endif

static tokenizer_t *tok;
static api_ctx_t ctx;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    spex_err_t err = {{0}};
    if (!(tok = tokenizer_load(SPEX_MODEL_DIR, &err))) {
        fprintf(stderr, "fuzz_batch_line: %s\n", err.msg);
        abort();
    }
    ctx = (api_ctx_t){.tok = tok, .vocab_size = tokenizer_vocab_size(tok), .context = 512};
    return 0;
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static void request(const cJSON *o, const char *key) {
    api_defaults_t d = {.temperature = 1.0f, .have_seed = true, .seed = fnv1a(key)};
    bool chat = cJSON_GetObjectItemCaseSensitive(o, "messages") != NULL;
    api_request_t rq;
    api_error_t e;
    if (api_parse_request(&ctx, chat ? API_CHAT : API_COMPLETION, o, &d, &rq, &e) == 0) api_request_free(&rq);
    else if (!e.message[0]) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *line = fuzz_cstr(data, n);   /* batch reads lines with getline: NUL-terminated, NULs inside kept */
    size_t len = n;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    const char *why = "not a JSON object";
    size_t at;
    cJSON *o = json_parse_doc(line, len, &why, &at);
    if (!o && !why) abort();
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (cJSON_IsObject(o) && (cJSON_IsString(id) || cJSON_IsNumber(id))) {
        char *key = json_raw_key(id, line, len, "id");
        if (!key) abort();
        request(o, key);
        free(key);
    }
    cJSON_Delete(o);
    free(line);
    return 0;
}
