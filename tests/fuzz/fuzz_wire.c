/* fuzz_wire.c - libFuzzer harness for the bytes a rank receives
 * (transport/wire.c, transport/codec*.c, worker/worker.c): two surfaces chosen
 * by the input's first byte.
 *   even: a codec payload. Byte 1 picks the codec (raw, bf16, fp8, each with
 *        and without zstd), bytes 2..4 the shape (1..8 rows, 1..300 columns),
 *        the rest is decoded by codec_decode(): every length, truncated or
 *        corrupt zstd frame and bad fp8 scale must fail cleanly.
 *   odd: a sequence of frames, each starting at the "SPX\x01" magic: each is
 *        wire_unpack()ed and handed to worker_handle() of an expert worker on
 *        tests/data/golden/tiny-f32 (rank 1 of 2), which must answer (a reply
 *        or an error reply) and keep going; a bye after the input ends the
 *        session. A valid hello then dispatches reach the experts.
 * SPEX_FUZZ_WIRE_SEEDS=DIR writes the seed corpus (valid frames and payloads
 * for every codec) to DIR and exits: tests/fuzz/corpus/wire/ was made so.
 * Dictionary: tests/fuzz/dict/wire.dict. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_util.h"
#include "transport/codec.h"
#include "transport/wire.h"
#include "worker/worker.h"

#ifndef SPEX_TEST_DATA
#error "SPEX_TEST_DATA must name tests/data"
#endif

#define MODEL SPEX_TEST_DATA "/golden/tiny-f32"
enum { HIDDEN = 128, EXPERTS = 16, LAYERS = 4, MAX_ROWS = 8, MAX_COLS = 300 };

static const char *codec_specs[] = {"raw", "bf16", "fp8", "raw+zstd", "bf16+zstd", "fp8+zstd"};
static worker_t *worker;
static codec_ctx_t *cctx;
static uint8_t *bye;
static size_t bye_len;

static uint8_t *frame(Spex__Header *h, const uint8_t *payload, size_t plen, size_t *len) {
    uint8_t *out;
    spex_err_t err = {{0}};
    if (wire_pack(h, payload, plen, &out, len, &err)) abort();
    return out;
}

static void emit(const char *dir, const char *name, const uint8_t *a, size_t na, const uint8_t *b, size_t nb) {
    char *p = fuzz_path(dir, name);
    uint8_t *buf = malloc(na + nb + 1);
    memcpy(buf, a, na);
    if (nb) memcpy(buf + na, b, nb);
    fuzz_write_file(p, buf, na + nb);
    free(buf);
    free(p);
}

/* A hello for this worker with codec `spec` both ways. */
static uint8_t *hello_frame(const char *spec, size_t *len) {
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__Hello m = SPEX__HELLO__INIT;
    uint32_t experts[EXPERTS];
    for (int e = 0; e < EXPERTS; e++) experts[e] = (uint32_t)e;
    m.model_id = worker_model_id(worker);
    m.rank = 1, m.world = 2, m.n_layers = LAYERS, m.n_routed = EXPERTS, m.hidden = HIDDEN;
    m.n_experts = EXPERTS, m.experts = experts;
    m.dispatch_codec = m.combine_codec = (char *)spec;
    h.step = 1, h.body_case = SPEX__HEADER__BODY_HELLO, h.hello = &m;
    return frame(&h, NULL, 0, len);
}

/* A dispatch of 2 rows x 2 experts to layer 1, payload encoded with `spec`. */
static uint8_t *dispatch_frame(const char *spec, size_t *len) {
    codec_t c;
    spex_err_t err = {{0}};
    if (codec_parse(spec, &c, &err)) abort();
    float x[2 * HIDDEN];
    for (int i = 0; i < 2 * HIDDEN; i++) x[i] = (float)((i * 37) % 19) / 7.0f - 1.0f;
    size_t cap = codec_max_encoded(&c, 2, HIDDEN), plen;
    uint8_t *pl = malloc(cap);
    if (codec_encode(&c, x, 2, HIDDEN, pl, cap, &plen, cctx, &err)) abort();
    uint32_t counts[2] = {2, 2}, ex[4] = {0, 5, 3, 15};
    float weights[4] = {0.5f, 0.5f, 0.25f, 0.75f};
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__Dispatch d = SPEX__DISPATCH__INIT;
    d.layer = 1, d.rows = 2, d.n_counts = 2, d.counts = counts, d.n_experts = 4, d.experts = ex;
    d.n_weights = 4, d.weights = weights, d.codec = (char *)spec;
    h.step = 2, h.body_case = SPEX__HEADER__BODY_DISPATCH, h.dispatch = &d;
    uint8_t *f = frame(&h, pl, plen, len);
    free(pl);
    return f;
}

static void write_seeds(const char *dir) {
    for (int k = 0; k < 6; k++) {
        size_t hl, dl;
        uint8_t *he = hello_frame(codec_specs[k], &hl), *di = dispatch_frame(codec_specs[k], &dl);
        char name[64];
        snprintf(name, sizeof name, "session-%d", k);
        uint8_t mode = 1;
        uint8_t *both = malloc(hl + dl);
        memcpy(both, he, hl);
        memcpy(both + hl, di, dl);
        emit(dir, name, &mode, 1, both, hl + dl);
        free(both);
        /* the dispatch payload alone, for the codec surface */
        const uint8_t *pl;
        size_t plen;
        wire_header_t *h;
        spex_err_t err = {{0}};
        if (wire_unpack(di, dl, 0, &h, &pl, &plen, &err)) abort();
        uint8_t head[5] = {0, (uint8_t)k, 1, (HIDDEN - 1) & 0xff, (HIDDEN - 1) >> 8};
        snprintf(name, sizeof name, "payload-%d", k);
        emit(dir, name, head, 5, pl, plen);
        wire_header_free(h);
        free(he);
        free(di);
    }
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__StatsRequest sr = SPEX__STATS_REQUEST__INIT;
    Spex__Shutdown sd = SPEX__SHUTDOWN__INIT;
    size_t len;
    uint8_t mode = 1, *f;
    h.body_case = SPEX__HEADER__BODY_STATS_REQUEST, h.stats_request = &sr;
    emit(dir, "stats", &mode, 1, f = frame(&h, NULL, 0, &len), len);
    free(f);
    h.body_case = SPEX__HEADER__BODY_SHUTDOWN, h.shutdown = &sd;
    emit(dir, "shutdown", &mode, 1, f = frame(&h, NULL, 0, &len), len);
    free(f);
    emit(dir, "bye", &mode, 1, bye, bye_len);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    spex_err_t err = {{0}};
    if (!(worker = worker_create(MODEL, 1, 1, &err)) || !(cctx = codec_ctx_create(&err))) {
        fprintf(stderr, "fuzz_wire: %s\n", err.msg);
        abort();
    }
    Spex__Header h = SPEX__HEADER__INIT;
    Spex__Bye b = SPEX__BYE__INIT;
    h.body_case = SPEX__HEADER__BODY_BYE, h.bye = &b;
    bye = frame(&h, NULL, 0, &bye_len);
    const char *seeds = getenv("SPEX_FUZZ_WIRE_SEEDS");
    if (seeds) {
        write_seeds(seeds);
        exit(0);
    }
    return 0;
}

static void decode(const uint8_t *data, size_t n) {
    if (n < 5) return;
    codec_t c;
    spex_err_t err = {{0}};
    if (codec_parse(codec_specs[data[1] % 6], &c, &err)) abort();
    int rows = 1 + data[2] % MAX_ROWS, cols = 1 + (data[3] | data[4] << 8) % MAX_COLS;
    static float x[MAX_ROWS * MAX_COLS];
    if (codec_decode(&c, data + 5, n - 5, rows, cols, x, cctx, &err) && !err.msg[0]) abort();
}

static void handle(const uint8_t *f, size_t len) {
    uint8_t *reply = NULL;
    size_t reply_len = 0;
    bool shutdown = false;
    spex_err_t err = {{0}};
    if (worker_handle(worker, f, len, &reply, &reply_len, &shutdown, &err)) {
        fprintf(stderr, "worker_handle: %s\n", err.msg);
        abort();   /* only out of memory may stop a worker */
    }
    free(reply);
}

/* Frames: each from one "SPX\x01" magic to the next (or the end). */
static void frames(const uint8_t *data, size_t n) {
    static const uint8_t magic[4] = {'S', 'P', 'X', 1};
    size_t at = 0;
    while (at < n) {
        const uint8_t *next = n - at > 4 ? memmem(data + at + 4, n - at - 4, magic, 4) : NULL;
        size_t end = next ? (size_t)(next - data) : n;
        handle(data + at, end - at);
        at = end;
    }
    handle(bye, bye_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n == 0) return 0;
    if (data[0] & 1) frames(data + 1, n - 1);
    else decode(data, n);
    return 0;
}
