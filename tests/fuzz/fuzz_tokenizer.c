/* fuzz_tokenizer.c - libFuzzer harness for coordinator/tokenizer/: two
 * surfaces chosen by the input's first byte.
 *   '{'  the input is a tokenizer.json: tokenizer_load() (model, merges in
 *        both formats, added tokens, normalizer, pre-tokenizer regexes,
 *        decoder), then, if accepted, encode and decode of fixed texts and of
 *        the input itself, and decode of ids taken from the input (some out
 *        of range: an error, not a crash).
 *   else the input is text: encoded with DeepSeek-V3's real tokenizer
 *        (tests/data/deepseek-v3-tokenizer, loaded once) and the tiny one of
 *        the tests; every byte string must decode back to itself (byte-level
 *        BPE is lossless), and decoding the ids in a streaming UTF-8 buffer
 *        must give the same bytes.
 * Seeds: tests/fuzz/corpus/tokenizer/, dictionary tests/fuzz/dict/tokenizer.dict. */
#include <stddef.h>
#include <stdint.h>

#include "coordinator/tokenizer/tokenizer.h"
#include "fuzz_util.h"

#ifndef SPEX_TEST_DATA
#error "SPEX_TEST_DATA must name tests/data"
#endif

static tokenizer_t *ds, *tiny;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    spex_err_t err = {{0}};
    ds = tokenizer_load(SPEX_TEST_DATA "/deepseek-v3-tokenizer", &err);
    tiny = tokenizer_load(SPEX_TEST_DATA "/tiny-tokenizer", &err);
    if (!ds || !tiny) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        abort();
    }
    return 0;
}

/* Encode, decode, compare: a byte-level tokenizer without normalizer gives the bytes back. */
static void round_trip(const tokenizer_t *t, const char *s, size_t len, bool must_match) {
    int32_t *ids = NULL;
    size_t n = 0, out_len = 0;
    spex_err_t err = {{0}};
    if (tokenizer_encode(t, s, len, false, &ids, &n, &err)) {
        if (must_match) {
            fprintf(stderr, "encode failed: %s\n", err.msg);
            abort();
        }
        return;
    }
    char *back = tokenizer_decode(t, ids, n, false, &out_len, &err);
    if (must_match && (!back || out_len != len || memcmp(back, s, len))) {
        fprintf(stderr, "round trip differs (%zu bytes -> %zu ids -> %zu bytes)\n", len, n, out_len);
        abort();
    }
    if (back) {   /* the streaming decoder emits the same bytes */
        utf8_stream_t st = UTF8_STREAM_INIT;
        size_t k = 0;
        char buf[8];
        for (size_t i = 0; i < n; i++) {
            size_t tl;
            const char *tb = tokenizer_token_bytes(t, ids[i], &tl);
            for (size_t j = 0; tb && j < tl; j++) {
                size_t m = utf8_stream_push(&st, tb + j, 1, buf);
                if (k + m > out_len || memcmp(back + k, buf, m)) abort();
                k += m;
            }
        }
        k += utf8_stream_flush(&st, buf);
    }
    free(back);
    free(ids);
}

static void fuzz_json(const uint8_t *data, size_t n) {
    char *path = fuzz_path(fuzz_scratch_dir(), "tokenizer.json");
    fuzz_write_file(path, data, n);
    spex_err_t err = {{0}};
    tokenizer_t *t = tokenizer_load(path, &err);
    free(path);
    if (!t) {
        if (!err.msg[0]) abort();
        return;
    }
    static const char *texts[] = {"", "hello world", "Hello, World! 123 don't", "  \n\n\t x", "caf\xc3\xa9 \xe6\x97\xa5",
                                  "\xff\xfe", "<s>a</s>"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) round_trip(t, texts[i], strlen(texts[i]), false);
    round_trip(t, (const char *)data, n < 512 ? n : 512, false);
    int vocab = tokenizer_vocab_size(t);
    int32_t ids[64];
    size_t k = 0;
    for (size_t i = 0; i + 1 < n && k < 64; i += 2) ids[k++] = (int32_t)(data[i] | data[i + 1] << 8) - 8;
    size_t len;
    char *s = tokenizer_decode(t, ids, k, true, &len, &err);
    free(s);
    (void)tokenizer_token_id(t, "<s>");
    (void)tokenizer_is_special(t, vocab > 0 ? vocab - 1 : 0);
    (void)tokenizer_bos_id(t);
    (void)tokenizer_eos_id(t);
    tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n && data[0] == '{') {
        fuzz_json(data, n);
        return 0;
    }
    round_trip(ds, (const char *)data, n, true);
    round_trip(tiny, (const char *)data, n, false);
    return 0;
}
