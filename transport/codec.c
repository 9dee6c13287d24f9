/* codec.c - see codec.h: codec specs, the raw/bf16 element codecs, the zstd stage
 * (byte shuffle + one zstd frame) and the XXH32 message checksum (libxxhash).
 *
 * Encoding is two stages:  x --element codec--> plain bytes --shuffle+zstd--> out
 * Without zstd the element codec writes straight into `out`; with zstd it writes
 * into the context's scratch, which is shuffled into a second scratch buffer and
 * compressed into `out`. Decoding runs the stages backwards and checks every size
 * against the one the shape implies before touching memory.
 *
 * The plain layout is a list of "streams" of fixed-width little-endian elements
 * (raw: one stream of f32, bf16: one of u16, fp8: f32 scales then u8 codes); the
 * shuffle transposes each stream's bytes (element i, byte k -> k * count + i). */
#include "transport/codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "core/dtype.h"

struct codec_ctx {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    uint8_t *plain, *shuf;        /* scratch: plain layout and its shuffled form */
    size_t plain_cap, shuf_cap;
    float e4m3_lut[256];          /* e4m3 code -> f32, for fp8 decoding */
};

static const char *const KIND_NAMES[] = {[CODEC_RAW] = "raw", [CODEC_BF16] = "bf16", [CODEC_FP8] = "fp8"};

/* ---- specs ---- */

static int parse_level(const char *spec, const char *s, int *level, spex_err_t *err) {
    char *end;
    bool digits = *s == '-' ? s[1] >= '0' && s[1] <= '9' : *s >= '0' && *s <= '9';   /* no spaces, no '+' */
    errno = 0;
    long v = strtol(s, &end, 10);
    int lo = ZSTD_minCLevel(), hi = ZSTD_maxCLevel();
    if (!digits || *end || errno || v < lo || v > hi)
        return spex_fail(err, "codec '%s': zstd level '%s' is not an integer in [%d, %d]", spec, s, lo, hi);
    *level = (int)v;
    return 0;
}

int codec_parse(const char *spec, codec_t *out, spex_err_t *err) {
    if (!spec) return spex_fail(err, "codec spec is missing");
    codec_t c = {.kind = CODEC_RAW, .zstd = false, .zstd_level = CODEC_ZSTD_LEVEL_DEFAULT};
    const char *plus = strchr(spec, '+');
    size_t klen = plus ? (size_t)(plus - spec) : strlen(spec);
    int k = 0;
    while (k <= CODEC_FP8 && !(strlen(KIND_NAMES[k]) == klen && !strncmp(spec, KIND_NAMES[k], klen))) k++;
    if (k > CODEC_FP8)
        return spex_fail(err, "codec '%s': unknown element format '%.*s' (expected raw, bf16 or fp8, "
                              "optionally followed by +zstd or +zstd:<level>)", spec, (int)klen, spec);
    c.kind = (codec_kind_t)k;
    if (plus) {
        const char *z = plus + 1;
        if (strncmp(z, "zstd", 4) || (z[4] != '\0' && z[4] != ':'))
            return spex_fail(err, "codec '%s': unknown compressor '%s' (expected zstd or zstd:<level>)", spec, z);
        c.zstd = true;
        if (z[4] == ':' && parse_level(spec, z + 5, &c.zstd_level, err)) return -1;
    }
    *out = c;
    return 0;
}

const char *codec_name(const codec_t *c, char *buf, size_t cap) {
    const char *k = (unsigned)c->kind <= CODEC_FP8 ? KIND_NAMES[c->kind] : "?";
    if (!c->zstd) snprintf(buf, cap, "%s", k);
    else if (c->zstd_level == CODEC_ZSTD_LEVEL_DEFAULT) snprintf(buf, cap, "%s+zstd", k);
    else snprintf(buf, cap, "%s+zstd:%d", k, c->zstd_level);
    return buf;
}

bool codec_lossless(const codec_t *c) { return c->kind == CODEC_RAW; }

/* ---- sizes and the stream view of the plain layout ---- */

typedef struct { size_t count; size_t width; } stream_t;

/* Streams of the plain layout of x[rows, cols] (shape already validated). */
static int plain_streams(codec_kind_t kind, size_t rows, size_t cols, stream_t s[2]) {
    size_t n = rows * cols, nb = (cols + CODEC_FP8_BLOCK - 1) / CODEC_FP8_BLOCK;
    switch (kind) {
    case CODEC_RAW: s[0] = (stream_t){n, 4}; return 1;
    case CODEC_BF16: s[0] = (stream_t){n, 2}; return 1;
    default: s[0] = (stream_t){rows * nb, 4}; s[1] = (stream_t){n, 1}; return 2;
    }
}

size_t codec_plain_size(codec_kind_t kind, int rows, int cols) {
    if (rows < 0 || cols < 0 || (unsigned)kind > CODEC_FP8) return 0;
    if (cols && (size_t)rows > SIZE_MAX / 8 / (size_t)cols) return 0;   /* n * 8 must fit */
    stream_t s[2];
    int ns = plain_streams(kind, (size_t)rows, (size_t)cols, s);
    size_t total = 0;
    for (int i = 0; i < ns; i++) total += s[i].count * s[i].width;
    return total;
}

/* Shape usable by kind: non-negative and small enough for size_t arithmetic. */
static bool shape_ok(codec_kind_t kind, int rows, int cols) {
    return rows >= 0 && cols >= 0 && (rows == 0 || cols == 0 || codec_plain_size(kind, rows, cols) != 0);
}

size_t codec_max_encoded(const codec_t *c, int rows, int cols) {
    if (!shape_ok(c->kind, rows, cols)) return 0;
    size_t plain = codec_plain_size(c->kind, rows, cols);
    if (!c->zstd) return plain;
    size_t bound = ZSTD_compressBound(plain);
    return ZSTD_isError(bound) ? 0 : bound;
}

/* Rejects what no shape or codec can encode: the message names the culprit. */
static int check_call(const codec_t *c, int rows, int cols, const codec_ctx_t *ctx, spex_err_t *err) {
    if ((unsigned)c->kind > CODEC_FP8) return spex_fail(err, "unknown codec kind %d", (int)c->kind);
    if (!shape_ok(c->kind, rows, cols)) return spex_fail(err, "shape is negative or too large");
    if (c->zstd && (c->zstd_level < ZSTD_minCLevel() || c->zstd_level > ZSTD_maxCLevel()))
        return spex_fail(err, "zstd level %d outside [%d, %d]", c->zstd_level, ZSTD_minCLevel(), ZSTD_maxCLevel());
    if (!ctx) return spex_fail(err, "no codec context");
    return 0;
}

/* ---- context ---- */

codec_ctx_t *codec_ctx_create(spex_err_t *err) {
    codec_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (!ctx) { spex_fail(err, "codec context: out of memory"); return NULL; }
    ctx->cctx = ZSTD_createCCtx();
    ctx->dctx = ZSTD_createDCtx();
    if (!ctx->cctx || !ctx->dctx) {
        codec_ctx_free(ctx);
        spex_fail(err, "codec context: cannot create zstd contexts (out of memory)");
        return NULL;
    }
    for (int i = 0; i < 256; i++) ctx->e4m3_lut[i] = e4m3_to_f32((uint8_t)i);
    return ctx;
}

void codec_ctx_free(codec_ctx_t *ctx) {
    if (!ctx) return;
    ZSTD_freeCCtx(ctx->cctx);
    ZSTD_freeDCtx(ctx->dctx);
    free(ctx->plain);
    free(ctx->shuf);
    free(ctx);
}

/* Grow *buf to at least n bytes (at least 1, so it is never NULL). */
static int ensure(uint8_t **buf, size_t *cap, size_t n, spex_err_t *err) {
    if (n == 0) n = 1;
    if (*cap >= n) return 0;
    uint8_t *p = realloc(*buf, n);
    if (!p) return spex_fail(err, "out of memory for %zu bytes of scratch", n);
    *buf = p;
    *cap = n;
    return 0;
}

/* ---- byte shuffle of the plain layout ---- */

/* One stream of n elements of w bytes: element-major <-> byte-plane-major. Element
 * by element, so the reads (or writes) are sequential and the w planes are written
 * (or read) as w sequential streams; `w` is a constant in each call below. */
static inline void shuffle_one(const uint8_t *src, uint8_t *dst, size_t n, size_t w, bool fwd) {
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < w; k++) {
            if (fwd) dst[k * n + i] = src[i * w + k];
            else dst[i * w + k] = src[k * n + i];
        }
}

/* Stream by stream: element i, byte k at src[i * w + k] -> dst[k * count + i]
 * (fwd), or back (!fwd). Width-1 streams are copied. */
static void shuffle_streams(const stream_t *s, int ns, const uint8_t *src, uint8_t *dst, bool fwd) {
    for (int j = 0; j < ns; j++) {
        size_t n = s[j].count, w = s[j].width;
        if (w == 4) shuffle_one(src, dst, n, 4, fwd);
        else if (w == 2) shuffle_one(src, dst, n, 2, fwd);
        else memcpy(dst, src, n * w);
        src += n * w;
        dst += n * w;
    }
}

/* ---- raw / bf16 element codecs (fp8 lives in codec_fp8.c) ---- */

static void put_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* x[n] -> n little-endian f32 bit patterns (or back). */
static void raw_encode(const float *x, size_t n, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        put_le32(out + 4 * i, u);
    }
}

static void raw_decode(const uint8_t *in, size_t n, float *x) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = get_le32(in + 4 * i);
        memcpy(&x[i], &u, 4);
    }
}

/* x[n] -> n little-endian bf16 (round to nearest even), or back (exact). */
static void bf16_encode(const float *x, size_t n, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h = f32_to_bf16(x[i]);
        out[2 * i] = (uint8_t)h;
        out[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

static void bf16_decode(const uint8_t *in, size_t n, float *x) {
    for (size_t i = 0; i < n; i++) x[i] = bf16_to_f32((uint16_t)(in[2 * i] | in[2 * i + 1] << 8));
}

static void encode_plain(codec_kind_t kind, const float *x, int rows, int cols, uint8_t *out) {
    size_t n = (size_t)rows * (size_t)cols;
    if (kind == CODEC_RAW) raw_encode(x, n, out);
    else if (kind == CODEC_BF16) bf16_encode(x, n, out);
    else codec_fp8_encode_plain(x, rows, cols, out);
}

static int decode_plain(codec_kind_t kind, const uint8_t *in, int rows, int cols, const float *lut, float *x,
                        spex_err_t *err) {
    size_t n = (size_t)rows * (size_t)cols;
    if (kind == CODEC_RAW) raw_decode(in, n, x);
    else if (kind == CODEC_BF16) bf16_decode(in, n, x);
    else return codec_fp8_decode_plain(in, rows, cols, lut, x, err);
    return 0;
}

/* ---- encode / decode ---- */

static int fail_ctx(const codec_t *c, const char *op, int rows, int cols, spex_err_t *err) {
    char name[48];
    return spex_err_prefix(err, "codec %s: %s %d x %d: ", codec_name(c, name, sizeof name), op, rows, cols);
}

static int encode_zstd(const codec_t *c, const float *x, int rows, int cols, uint8_t *out, size_t cap,
                       size_t *out_len, codec_ctx_t *ctx, spex_err_t *err) {
    size_t plain = codec_plain_size(c->kind, rows, cols);
    if (ensure(&ctx->plain, &ctx->plain_cap, plain, err) || ensure(&ctx->shuf, &ctx->shuf_cap, plain, err))
        return -1;
    stream_t s[2];
    int ns = plain_streams(c->kind, (size_t)rows, (size_t)cols, s);
    encode_plain(c->kind, x, rows, cols, ctx->plain);
    shuffle_streams(s, ns, ctx->plain, ctx->shuf, true);
    size_t z = ZSTD_compressCCtx(ctx->cctx, out, cap, ctx->shuf, plain, c->zstd_level);
    if (ZSTD_isError(z))
        return spex_fail(err, "zstd: %s (output buffer %zu bytes, bound %zu)", ZSTD_getErrorName(z), cap,
                         ZSTD_compressBound(plain));
    *out_len = z;
    return 0;
}

int codec_encode(const codec_t *c, const float *x, int rows, int cols, uint8_t *out, size_t cap, size_t *out_len,
                 codec_ctx_t *ctx, spex_err_t *err) {
    if (check_call(c, rows, cols, ctx, err)) return fail_ctx(c, "encode", rows, cols, err);
    if (c->zstd) {
        if (encode_zstd(c, x, rows, cols, out, cap, out_len, ctx, err)) return fail_ctx(c, "encode", rows, cols, err);
        return 0;
    }
    size_t plain = codec_plain_size(c->kind, rows, cols);
    if (cap < plain) {
        spex_fail(err, "output buffer holds %zu bytes, need %zu", cap, plain);
        return fail_ctx(c, "encode", rows, cols, err);
    }
    encode_plain(c->kind, x, rows, cols, out);
    *out_len = plain;
    return 0;
}

/* Decompress in[0 .. len) into ctx->shuf, exactly `plain` bytes. */
static int unzstd(const uint8_t *in, size_t len, size_t plain, codec_ctx_t *ctx, spex_err_t *err) {
    unsigned long long fcs = ZSTD_getFrameContentSize(in, len);
    if (fcs == ZSTD_CONTENTSIZE_ERROR)
        return spex_fail(err, "payload of %zu bytes is not a zstd frame (truncated or corrupt header)", len);
    if (fcs == ZSTD_CONTENTSIZE_UNKNOWN) return spex_fail(err, "zstd frame does not state its content size");
    if (fcs != plain) return spex_fail(err, "zstd frame holds %llu bytes, expected %zu", fcs, plain);
    if (ensure(&ctx->shuf, &ctx->shuf_cap, plain, err)) return -1;
    size_t d = ZSTD_decompressDCtx(ctx->dctx, ctx->shuf, plain, in, len);
    if (ZSTD_isError(d)) return spex_fail(err, "zstd: %s (payload %zu bytes)", ZSTD_getErrorName(d), len);
    if (d != plain) return spex_fail(err, "zstd frame decoded to %zu bytes, expected %zu", d, plain);
    return 0;
}

static int decode_zstd(const codec_t *c, const uint8_t *in, size_t len, int rows, int cols, float *x,
                       codec_ctx_t *ctx, spex_err_t *err) {
    size_t plain = codec_plain_size(c->kind, rows, cols);
    if (unzstd(in, len, plain, ctx, err) || ensure(&ctx->plain, &ctx->plain_cap, plain, err)) return -1;
    stream_t s[2];
    int ns = plain_streams(c->kind, (size_t)rows, (size_t)cols, s);
    shuffle_streams(s, ns, ctx->shuf, ctx->plain, false);
    return decode_plain(c->kind, ctx->plain, rows, cols, ctx->e4m3_lut, x, err);
}

int codec_decode(const codec_t *c, const uint8_t *in, size_t len, int rows, int cols, float *x, codec_ctx_t *ctx,
                 spex_err_t *err) {
    if (check_call(c, rows, cols, ctx, err)) return fail_ctx(c, "decode", rows, cols, err);
    if (c->zstd) {
        if (decode_zstd(c, in, len, rows, cols, x, ctx, err)) return fail_ctx(c, "decode", rows, cols, err);
        return 0;
    }
    size_t plain = codec_plain_size(c->kind, rows, cols);
    if (len != plain) {
        spex_fail(err, "payload is %zu bytes, expected %zu", len, plain);
        return fail_ctx(c, "decode", rows, cols, err);
    }
    if (decode_plain(c->kind, in, rows, cols, ctx->e4m3_lut, x, err))
        return fail_ctx(c, "decode", rows, cols, err);
    return 0;
}

/* ---- the message checksum: XXH32 from libxxhash ---- */

uint32_t codec_checksum(const uint8_t *p, size_t n) { return XXH32(p, n, 0); }
