/* test_codec.c - transport/codec: the six codecs (raw, bf16, fp8, each with and
 * without zstd) round-trip random and adversarial activations within their
 * documented bounds, checked per element:
 *   raw:  bit-identical (any bit pattern: -0, NaN payloads, Inf, subnormals)
 *   bf16: identical to core/dtype's f32 -> bf16 -> f32 (RNE), hence
 *         |x - x'| <= 2^-8 |x| (normal), <= 2^-134 (subnormal); Inf kept, NaN -> NaN
 *   fp8:  per 128-channel block with amax = max finite |x|:
 *         |x - x'| <= (2^-4 + 2^-20) |x| + 2^-18 amax + 2^-149   and   |x - x'| <= 2^-4 amax;
 *         +-0 keeps its sign; NaN and +-Inf -> NaN
 * plus the layouts (little-endian, fp8 scales then codes), clean errors on
 * truncated / corrupt / mis-sized input (buffers are malloc'ed to their exact
 * size so ASan sees any overrun), spec parsing, compression of compressible
 * data and the XXH32 checksum against the reference vectors. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "testutil.h"
#include "transport/codec.h"

static const char *const SPECS[] = {"raw", "raw+zstd", "bf16", "bf16+zstd", "fp8", "fp8+zstd"};
#define N_SPECS 6

static codec_t parse_ok(const char *spec) {
    codec_t c;
    spex_err_t err = {{0}};
    cr_assert_eq(codec_parse(spec, &c, &err), 0, "%s: %s", spec, err.msg);
    return c;
}

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Gaussian N(0, sigma) via Box-Muller on a xorshift stream, with every 97th
 * element an outlier 50x larger (activations have a few huge channels). */
static void fill_activations(float *x, size_t n, unsigned seed, float sigma) {
    uint64_t s = 0x9E3779B97F4A7C15ull ^ (seed * 0x2545F4914F6CDD1Dull);
    for (size_t i = 0; i < n; i++) {
        double u[2];
        for (int k = 0; k < 2; k++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            u[k] = ((double)(s >> 11) + 0.5) / 9007199254740992.0;
        }
        double g = sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
        x[i] = (float)(g * sigma * (i % 97 == 13 ? 50.0 : 1.0));
    }
}

/* Encode into an exactly-sized buffer; returns it (caller frees), length in *len. */
static uint8_t *encode_ok(const codec_t *c, const float *x, int rows, int cols, size_t *len, codec_ctx_t *ctx) {
    size_t cap = codec_max_encoded(c, rows, cols);
    uint8_t *buf = malloc(cap ? cap : 1);
    spex_err_t err = {{0}};
    cr_assert_eq(codec_encode(c, x, rows, cols, buf, cap, len, ctx, &err), 0, "encode: %s", err.msg);
    cr_assert_leq(*len, cap);
    uint8_t *exact = malloc(*len ? *len : 1);
    memcpy(exact, buf, *len);
    free(buf);
    return exact;
}

/* x -> encode -> decode -> y (y has rows*cols floats). Returns the encoded length. */
static size_t roundtrip(const codec_t *c, const float *x, int rows, int cols, float *y, codec_ctx_t *ctx) {
    size_t len;
    uint8_t *enc = encode_ok(c, x, rows, cols, &len, ctx);
    spex_err_t err = {{0}};
    cr_assert_eq(codec_decode(c, enc, len, rows, cols, y, ctx, &err), 0, "decode: %s", err.msg);
    free(enc);
    return len;
}

/* ---- per-element bounds ---- */

static void check_raw(const float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(bits(x[i]), bits(y[i]), "raw element %zu: 0x%08x -> 0x%08x", i, bits(x[i]), bits(y[i]));
}

static void check_bf16(const float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float want = bf16_to_f32(f32_to_bf16(x[i]));
        if (isnan(x[i])) {
            cr_assert(isnan(y[i]) && signbit(y[i]) == signbit(x[i]) && (bits(y[i]) & 0x00400000u),
                      "bf16 element %zu: NaN must stay a quiet NaN with its sign", i);
            continue;
        }
        cr_assert_eq(bits(y[i]), bits(want), "bf16 element %zu: %g -> %g, want %g", i, x[i], y[i], want);
        if (isinf(y[i])) {   /* Inf kept; finite values overflow only past the largest bf16 */
            cr_assert(isinf(x[i]) || fabsf(x[i]) > 3.38953139e38f, "bf16 element %zu: %g became Inf", i, x[i]);
            cr_assert_eq(signbit(y[i]), signbit(x[i]));
            continue;
        }
        double ax = fabs((double)x[i]), bound = ax >= FLT_MIN ? ax * 0x1p-8 : 0x1p-134;
        cr_assert_leq(fabs((double)x[i] - y[i]), bound, "bf16 element %zu: %a -> %a", i, x[i], y[i]);
        if (x[i] == 0) cr_assert_eq(signbit(y[i]), signbit(x[i]), "bf16 element %zu: sign of zero", i);
    }
}

static double block_amax(const float *x, int n) {
    double amax = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]) && fabs((double)x[i]) > amax) amax = fabs((double)x[i]);
    return amax;
}

static void check_fp8_block(const float *x, const float *y, int n, size_t at) {
    double amax = block_amax(x, n);
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            cr_assert(isnan(y[i]), "fp8 element %zu: non-finite %g must decode to NaN, got %g", at + i, x[i], y[i]);
            continue;
        }
        cr_assert(isfinite(y[i]), "fp8 element %zu: %a decoded to %g", at + i, x[i], y[i]);
        double ax = fabs((double)x[i]), d = fabs((double)x[i] - y[i]);
        double tight = ax * (0x1p-4 + 0x1p-20) + amax * 0x1p-18 + 0x1p-149;
        cr_assert_leq(d, tight, "fp8 element %zu: %a -> %a (amax %a)", at + i, x[i], y[i], amax);
        cr_assert_leq(d, amax * 0x1p-4, "fp8 element %zu: %a -> %a exceeds amax*2^-4 (amax %a)", at + i, x[i],
                      y[i], amax);
        if (x[i] == 0 || y[i] == 0)
            cr_assert_eq(signbit(y[i]), signbit(x[i]), "fp8 element %zu: sign of %a -> %a", at + i, x[i], y[i]);
    }
}

static void check_fp8(const float *x, const float *y, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c0 = 0; c0 < cols; c0 += CODEC_FP8_BLOCK) {
            int n = cols - c0 < CODEC_FP8_BLOCK ? cols - c0 : CODEC_FP8_BLOCK;
            size_t at = (size_t)r * (size_t)cols + (size_t)c0;
            check_fp8_block(x + at, y + at, n, at);
        }
}

static void check_codec(const codec_t *c, const float *x, const float *y, int rows, int cols) {
    size_t n = (size_t)rows * (size_t)cols;
    if (c->kind == CODEC_RAW) check_raw(x, y, n);
    else if (c->kind == CODEC_BF16) check_bf16(x, y, n);
    else check_fp8(x, y, rows, cols);
}

/* Round trip x[rows, cols] through every codec, checking each. */
static void roundtrip_all(const float *x, int rows, int cols, codec_ctx_t *ctx) {
    size_t n = (size_t)rows * (size_t)cols;
    float *y = malloc((n ? n : 1) * sizeof *y);
    for (int s = 0; s < N_SPECS; s++) {
        codec_t c = parse_ok(SPECS[s]);
        for (size_t i = 0; i < n; i++) y[i] = 12345.0f;   /* decode must overwrite everything */
        roundtrip(&c, x, rows, cols, y, ctx);
        check_codec(&c, x, y, rows, cols);
    }
    free(y);
}

/* ---- round trips ---- */

Test(codec, roundtrip_random_shapes) {
    static const int shapes[][2] = {{1, 7168}, {3, 1024}, {4, 200}, {2, 1}, {5, 129}, {1, 127},
                                    {16, 7168}, {0, 7168}, {7, 0}, {0, 0}, {2, 128}, {3, 257}};
    codec_ctx_t *ctx = codec_ctx_create(NULL);
    cr_assert_not_null(ctx);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int rows = shapes[k][0], cols = shapes[k][1];
        size_t n = (size_t)rows * (size_t)cols;
        float *x = malloc((n ? n : 1) * sizeof *x);
        fill_activations(x, n, (unsigned)k + 1, k % 2 ? 1.0f : 0.02f);
        roundtrip_all(x, rows, cols, ctx);
        test_fill_random(x, n, (unsigned)k + 100, 3.0f);   /* uniform too */
        roundtrip_all(x, rows, cols, ctx);
        free(x);
    }
    codec_ctx_free(ctx);
}

/* One row, one adversarial pattern per 128-channel block, plus a short tail block. */
#define ADV_BLOCKS 9
#define ADV_COLS (ADV_BLOCKS * 128 + 50)
static void fill_adversarial(float *x) {
    test_fill_random(x, ADV_COLS, 7, 1.0f);
    float *b = x;
    for (int i = 0; i < 128; i++) b[i] = 0.0f;                                            /* 0: all zeros */
    b += 128;
    for (int i = 0; i < 128; i++) b[i] = i % 2 ? 0.0f : -0.0f;                            /* 1: +-0 */
    b += 128;
    for (int i = 0; i < 128; i++) b[i] = (i % 3 ? 3e38f : -3e38f) * (1.0f - (float)i / 256); /* 2: huge */
    b[5] = FLT_MAX; b[6] = -FLT_MAX; b[7] = 1e-30f;
    b += 128;
    for (int i = 0; i < 128; i++) b[i] = from_bits((uint32_t)(1 + i * 37) | (i % 2 ? 0x80000000u : 0)); /* 3: subnormals */
    b += 128;
    for (int i = 0; i < 128; i++) b[i] = ldexpf(i % 2 ? 1.3f : -1.7f, (i % 60) - 30);   /* 4: 2^-30 .. 2^29 */
    b[100] = -0.0f; b[101] = 0.0f; b[102] = FLT_MIN; b[103] = 1e-40f;
    b += 128;
    b[0] = NAN; b[1] = INFINITY; b[2] = -INFINITY; b[3] = -NAN; b[4] = from_bits(0x7fa00001u); /* 5: non-finite */
    b[10] = 1e30f;   /* non-finite values do not enter amax: this one sets it */
    b += 128;
    for (int i = 0; i < 128; i++) b[i] = NAN;                                             /* 6: all NaN */
    b[9] = INFINITY; b[10] = -0.0f;
    b += 128;
    for (int i = 0; i < 128; i++) b[i] = from_bits(0x00800000u + (uint32_t)i);            /* 7: amax ~ FLT_MIN */
    b += 128;
    for (int i = 0; i < 128; i++) b[i] = 448.0f * (float)(i - 64) / 64.0f;                /* 8: e4m3 grid */
    b += 128;
    b[0] = 1e-45f; b[1] = -1e-45f; b[2] = 0;   /* tail: amax = the smallest subnormal */
    for (int i = 3; i < 50; i++) b[i] = i % 2 ? 1e-45f : 0.0f;
}

Test(codec, adversarial_values) {
    float x[ADV_COLS], x3[3 * ADV_COLS];
    fill_adversarial(x);
    codec_ctx_t *ctx = codec_ctx_create(NULL);
    roundtrip_all(x, 1, ADV_COLS, ctx);
    for (int r = 0; r < 3; r++) memcpy(x3 + r * ADV_COLS, x, sizeof x);   /* several rows */
    x3[ADV_COLS + 7] = NAN;
    roundtrip_all(x3, 3, ADV_COLS, ctx);
    codec_ctx_free(ctx);
}

Test(codec, raw_keeps_every_bit_pattern) {
    enum { N = 4096 };
    static const uint32_t special[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x7f800000u,
                                       0xff800000u, 0x7fc00000u, 0xffc12345u, 0x7f800001u, 0x7fbfffffu,
                                       0x7f7fffffu, 0x00800000u};
    float x[N], y[N];
    uint64_t s = 42;
    for (int i = 0; i < N; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        x[i] = from_bits(i < 12 ? special[i] : (uint32_t)(s >> 17));
    }
    codec_ctx_t *ctx = codec_ctx_create(NULL);
    for (int k = 0; k < 2; k++) {
        codec_t c = parse_ok(k ? "raw+zstd" : "raw");
        cr_assert(codec_lossless(&c));
        roundtrip(&c, x, 4, N / 4, y, ctx);
        cr_assert_eq(memcmp(x, y, sizeof x), 0);
    }
    codec_ctx_free(ctx);
}

Test(codec, lossless_flag) {
    for (int s = 0; s < N_SPECS; s++) {
        codec_t c = parse_ok(SPECS[s]);
        cr_assert_eq(codec_lossless(&c), c.kind == CODEC_RAW, "%s", SPECS[s]);
    }
}

/* ---- layouts ---- */

Test(codec, little_endian_layouts) {
    float x[2] = {1.0f, -2.0f};
    uint8_t out[16];
    size_t len;
    codec_ctx_t *ctx = codec_ctx_create(NULL);
    codec_t raw = parse_ok("raw"), bf = parse_ok("bf16");
    cr_assert_eq(codec_encode(&raw, x, 1, 2, out, sizeof out, &len, ctx, NULL), 0);
    static const uint8_t want_raw[] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
    cr_assert_eq(len, 8);
    cr_assert_eq(memcmp(out, want_raw, 8), 0);
    cr_assert_eq(codec_encode(&bf, x, 1, 2, out, sizeof out, &len, ctx, NULL), 0);
    static const uint8_t want_bf[] = {0x80, 0x3f, 0x00, 0xc0};
    cr_assert_eq(len, 4);
    cr_assert_eq(memcmp(out, want_bf, 4), 0);
    codec_ctx_free(ctx);
}

Test(codec, fp8_layout_scales_then_codes) {
    enum { R = 2, C = 200, NB = 2 };
    float x[R * C];
    fill_activations(x, R * C, 3, 2.0f);
    codec_t c = parse_ok("fp8");
    cr_assert_eq(codec_plain_size(CODEC_FP8, R, C), (size_t)(R * NB * 4 + R * C));
    codec_ctx_t *ctx = codec_ctx_create(NULL);
    size_t len;
    uint8_t *enc = encode_ok(&c, x, R, C, &len, ctx);
    cr_assert_eq(len, (size_t)(R * NB * 4 + R * C));
    for (int r = 0; r < R; r++)
        for (int b = 0; b < NB; b++) {
            const uint8_t *p = enc + (r * NB + b) * 4;
            float s = from_bits((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
            int c0 = b * 128, n = C - c0 < 128 ? C - c0 : 128;
            float amax = (float)block_amax(x + r * C + c0, n);
            cr_assert_eq(bits(s), bits(codec_fp8_scale(amax)), "row %d block %d", r, b);
            for (int i = 0; i < n; i++)
                cr_assert_eq(enc[R * NB * 4 + r * C + c0 + i], f32_to_e4m3(x[r * C + c0 + i] / s));
        }
    free(enc);
    codec_ctx_free(ctx);
}

Test(codec, fp8_scale_properties) {
    static const float amaxes[] = {1e-45f, 3e-45f, 1e-40f, FLT_MIN, 1e-30f, 0.1f, 1.0f, 448.0f,
                                   1e30f, 3e38f, FLT_MAX, 0x1.fffffcp127f, 1.00000012f};
    cr_assert_eq(codec_fp8_scale(0.0f), 0.0f);
    for (size_t i = 0; i < sizeof amaxes / sizeof amaxes[0]; i++) {
        float a = amaxes[i], s = codec_fp8_scale(a);
        cr_assert_gt(s, 0.0f, "amax %a", a);
        cr_assert(isfinite(s * 448.0f), "amax %a: 448 * scale overflows", a);
        if (a < 3e38f) cr_assert_leq((double)a / s, 448.0, "amax %a: amax/scale > 448 would saturate", a);
        cr_assert_leq((double)s, (double)a / 448 * (1 + 0x1p-23) + 0x1p-149, "amax %a: scale too large", a);
    }
}

Test(codec, fp8_zero_block_has_zero_scale) {
    float x[300] = {0}, y[300];
    x[299] = 1.0f;                        /* only the last (short) block is non-zero */
    x[5] = -0.0f;
    codec_t c = parse_ok("fp8");
    uint8_t out[3 * 4 + 300];
    size_t len;
    codec_ctx_t *ctx = codec_ctx_create(NULL);
    cr_assert_eq(codec_encode(&c, x, 1, 300, out, sizeof out, &len, ctx, NULL), 0);
    static const uint8_t zero4[4] = {0};
    cr_assert_eq(memcmp(out, zero4, 4), 0);
    cr_assert_eq(memcmp(out + 4, zero4, 4), 0);
    cr_assert_eq(codec_decode(&c, out, len, 1, 300, y, ctx, NULL), 0);
    for (int i = 0; i < 299; i++) cr_assert(y[i] == 0 && signbit(y[i]) == signbit(x[i]), "element %d", i);
    cr_assert_eq(y[299], 1.0f);
    codec_ctx_free(ctx);
}

/* ---- errors ---- */

static void expect_decode_error(const codec_t *c, const uint8_t *in, size_t len, int rows, int cols,
                                codec_ctx_t *ctx, const char *what, const char *needle) {
    uint8_t *copy = malloc(len ? len : 1);          /* exact size: ASan catches over-reads */
    if (len) memcpy(copy, in, len);
    size_t n = (size_t)rows * (size_t)cols;
    float *y = malloc((n ? n : 1) * sizeof *y);
    spex_err_t err = {{0}};
    char name[48];
    codec_name(c, name, sizeof name);
    cr_assert_eq(codec_decode(c, copy, len, rows, cols, y, ctx, &err), -1, "%s: %s must fail", name, what);
    cr_assert_neq(err.msg[0], '\0');
    cr_assert_not_null(strstr(err.msg, name), "message names the codec: %s", err.msg);
    if (needle) cr_assert_not_null(strstr(err.msg, needle), "%s: message '%s' lacks '%s'", what, err.msg, needle);
    free(y);
    free(copy);
}

Test(codec, truncated_and_missized_input_fails_cleanly) {
    enum { R = 3, C = 300 };
    float x[R * C];
    fill_activations(x, R * C, 9, 1.0f);
    codec_ctx_t *ctx = codec_ctx_create(NULL);
    for (int s = 0; s < N_SPECS; s++) {
        codec_t c = parse_ok(SPECS[s]);
        size_t len;
        uint8_t *enc = encode_ok(&c, x, R, C, &len, ctx);
        expect_decode_error(&c, enc, 0, R, C, ctx, "empty", NULL);
        expect_decode_error(&c, enc, 3, R, C, ctx, "3 bytes", NULL);
        expect_decode_error(&c, enc, len / 2, R, C, ctx, "half", NULL);
        expect_decode_error(&c, enc, len - 1, R, C, ctx, "one byte short", NULL);
        expect_decode_error(&c, enc, len, R + 1, C, ctx, "more rows than sent", "expected");
        expect_decode_error(&c, enc, len, R, C - 1, ctx, "fewer cols than sent", "expected");
        uint8_t *longer = calloc(len + 1, 1);   /* one trailing byte too many */
        memcpy(longer, enc, len);
        expect_decode_error(&c, longer, len + 1, R, C, ctx, "trailing byte", NULL);
        free(longer);
        free(enc);
    }
    codec_ctx_free(ctx);
}

/* Flip every byte of a small payload in turn: decoding may succeed (the codec
 * cannot see every corruption - that is the checksum's job) or fail with a
 * message, but never crash, hang or touch memory out of bounds. */
Test(codec, corrupted_bytes_never_crash) {
    enum { R = 2, C = 130 };
    float x[R * C], y[R * C];
    fill_activations(x, R * C, 11, 1.0f);
    codec_ctx_t *ctx = codec_ctx_create(NULL);
    for (int s = 0; s < N_SPECS; s++) {
        codec_t c = parse_ok(SPECS[s]);
        size_t len;
        uint8_t *enc = encode_ok(&c, x, R, C, &len, ctx);
        int failed = 0;
        for (size_t i = 0; i < len; i++)
            for (int flip = 0; flip < 2; flip++) {
                enc[i] ^= flip ? 0x01 : 0xff;
                spex_err_t err = {{0}};
                int rc = codec_decode(&c, enc, len, R, C, y, ctx, &err);
                cr_assert(rc == 0 || (rc == -1 && err.msg[0]), "%s byte %zu", SPECS[s], i);
                failed += rc != 0;
                enc[i] ^= flip ? 0x01 : 0xff;
            }
        if (c.zstd) cr_assert_gt(failed, 0, "%s: some corruptions must be detected", SPECS[s]);
        free(enc);
    }
    codec_ctx_free(ctx);
}

Test(codec, fp8_corrupt_scale_is_named) {
    enum { R = 2, C = 256 };
    float x[R * C];
    fill_activations(x, R * C, 12, 1.0f);
    codec_t c = parse_ok("fp8");
    codec_ctx_t *ctx = codec_ctx_create(NULL);
    size_t len;
    uint8_t *enc = encode_ok(&c, x, R, C, &len, ctx);
    static const uint32_t bad[] = {0xbf800000u /* -1 */, 0x7f800000u /* inf */, 0x7fc00000u /* NaN */,
                                   0x80000000u /* -0 */};
    for (size_t k = 0; k < 4; k++) {
        uint8_t *p = enc + (1 * 2 + 1) * 4;   /* row 1, block 1 */
        uint8_t save[4];
        memcpy(save, p, 4);
        for (int j = 0; j < 4; j++) p[j] = (uint8_t)(bad[k] >> (8 * j));
        expect_decode_error(&c, enc, len, R, C, ctx, "bad scale", "scale of row 1, block 1");
        memcpy(p, save, 4);
    }
    free(enc);
    codec_ctx_free(ctx);
}

Test(codec, zstd_frame_errors_are_specific) {
    enum { R = 2, C = 300 };
    float x[R * C];
    fill_activations(x, R * C, 13, 1.0f);
    codec_ctx_t *ctx = codec_ctx_create(NULL);
    codec_t rz = parse_ok("raw+zstd"), bz = parse_ok("bf16+zstd");
    size_t len;
    uint8_t *enc = encode_ok(&rz, x, R, C, &len, ctx);
    expect_decode_error(&bz, enc, len, R, C, ctx, "codec mismatch", "zstd frame holds");
    enc[0] ^= 0x55;
    expect_decode_error(&rz, enc, len, R, C, ctx, "bad magic", "not a zstd frame");
    free(enc);
    codec_t raw = parse_ok("raw");   /* plain payload handed to a zstd decoder */
    enc = encode_ok(&raw, x, R, C, &len, ctx);
    expect_decode_error(&rz, enc, len, R, C, ctx, "not compressed", "not a zstd frame");
    free(enc);
    codec_ctx_free(ctx);
}

Test(codec, encode_respects_output_capacity) {
    enum { R = 4, C = 1000 };
    float x[R * C];
    fill_activations(x, R * C, 14, 1.0f);
    codec_ctx_t *ctx = codec_ctx_create(NULL);
    for (int s = 0; s < N_SPECS; s++) {
        codec_t c = parse_ok(SPECS[s]);
        size_t len, small = c.zstd ? 64 : codec_max_encoded(&c, R, C) - 1;
        uint8_t *out = malloc(small);   /* exact size: a write past it is an ASan error */
        spex_err_t err = {{0}};
        cr_assert_eq(codec_encode(&c, x, R, C, out, small, &len, ctx, &err), -1, "%s", SPECS[s]);
        cr_assert_not_null(strstr(err.msg, "encode 4 x 1000"), "%s", err.msg);
        free(out);
    }
    codec_ctx_free(ctx);
}

Test(codec, invalid_calls_are_rejected) {
    float x[4] = {0}, y[4];
    uint8_t out[64];
    size_t len;
    spex_err_t err = {{0}};
    codec_ctx_t *ctx = codec_ctx_create(&err);
    codec_t c = parse_ok("bf16+zstd");
    cr_assert_eq(codec_encode(&c, x, -1, 4, out, sizeof out, &len, ctx, &err), -1);
    cr_assert_not_null(strstr(err.msg, "negative"), "%s", err.msg);
    cr_assert_eq(codec_max_encoded(&c, -1, 4), 0);
    cr_assert_eq(codec_plain_size(CODEC_RAW, INT32_MAX, INT32_MAX), 0, "size overflow");
    cr_assert_eq(codec_encode(&c, x, 1, 4, out, sizeof out, &len, NULL, &err), -1);
    cr_assert_not_null(strstr(err.msg, "context"), "%s", err.msg);
    cr_assert_eq(codec_decode(&c, out, 8, 1, 4, y, NULL, &err), -1);
    codec_t bad = c;
    bad.zstd_level = 1000;
    cr_assert_eq(codec_encode(&bad, x, 1, 4, out, sizeof out, &len, ctx, &err), -1);
    cr_assert_not_null(strstr(err.msg, "level 1000"), "%s", err.msg);
    bad = c;
    bad.kind = (codec_kind_t)7;
    cr_assert_eq(codec_decode(&bad, out, 8, 1, 4, y, ctx, &err), -1);
    cr_assert_not_null(strstr(err.msg, "kind 7"), "%s", err.msg);
    codec_ctx_free(ctx);
    codec_ctx_free(NULL);
}

/* ---- specs ---- */

Test(codec, parse_good_specs_and_names_round_trip) {
    static const struct { const char *spec; codec_kind_t kind; bool zstd; int level; const char *name; } good[] = {
        {"raw", CODEC_RAW, false, 1, "raw"},
        {"bf16", CODEC_BF16, false, 1, "bf16"},
        {"fp8", CODEC_FP8, false, 1, "fp8"},
        {"raw+zstd", CODEC_RAW, true, 1, "raw+zstd"},
        {"bf16+zstd:1", CODEC_BF16, true, 1, "bf16+zstd"},
        {"fp8+zstd:3", CODEC_FP8, true, 3, "fp8+zstd:3"},
        {"fp8+zstd:19", CODEC_FP8, true, 19, "fp8+zstd:19"},
        {"bf16+zstd:-5", CODEC_BF16, true, -5, "bf16+zstd:-5"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        codec_t c = parse_ok(good[i].spec), back;
        cr_assert_eq(c.kind, good[i].kind, "%s", good[i].spec);
        cr_assert_eq(c.zstd, good[i].zstd, "%s", good[i].spec);
        cr_assert_eq(c.zstd_level, good[i].level, "%s", good[i].spec);
        char buf[32];
        cr_assert_str_eq(codec_name(&c, buf, sizeof buf), good[i].name);
        back = parse_ok(buf);
        cr_assert(back.kind == c.kind && back.zstd == c.zstd && back.zstd_level == c.zstd_level);
    }
}

Test(codec, parse_bad_specs_name_the_spec) {
    static const char *const bad[] = {"", "fp16", "FP8", "fp8+lz4", "fp8+zstd:", "fp8+zstd:abc", "fp8+zstd:99",
                                      "fp8:3", "fp8+zstd:3x", "raw+zstd+zstd", "+zstd", "bf16+", "fp8+zstdx",
                                      "fp8+zstd:99999999999999999999", "fp8+zstd: 3", "fp8+zstd:+3", "fp8+zstd:-"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        codec_t c = {.kind = CODEC_BF16, .zstd = true, .zstd_level = 7};
        spex_err_t err = {{0}};
        cr_assert_eq(codec_parse(bad[i], &c, &err), -1, "'%s' must be rejected", bad[i]);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", bad[i]);
        cr_assert_not_null(strstr(err.msg, quoted), "message '%s' must name %s", err.msg, quoted);
        cr_assert(c.kind == CODEC_BF16 && c.zstd && c.zstd_level == 7, "'%s': *out untouched on error", bad[i]);
    }
    spex_err_t err = {{0}};
    codec_t c;
    cr_assert_eq(codec_parse(NULL, &c, &err), -1);
}

/* ---- compression ---- */

Test(codec, zstd_compresses) {
    enum { R = 64, C = 7168 };
    float *x = calloc((size_t)R * C, sizeof *x);
    codec_ctx_t *ctx = codec_ctx_create(NULL);
    for (int k = 0; k < 3; k++) {
        codec_t c = parse_ok(SPECS[2 * k + 1]), plain = c;
        plain.zstd = false;
        size_t len;
        uint8_t *enc = encode_ok(&c, x, R, C, &len, ctx);   /* zeros */
        cr_assert_lt(len * 10, codec_max_encoded(&plain, R, C), "%s: zeros %zu bytes", SPECS[2 * k + 1], len);
        free(enc);
    }
    /* Gaussian activations: the byte shuffle lets zstd squeeze the exponent bytes. */
    fill_activations(x, (size_t)R * C, 15, 1.0f);
    for (int k = 0; k < 3; k++) {
        codec_t c = parse_ok(SPECS[2 * k + 1]), plain = c;
        plain.zstd = false;
        size_t len, raw = codec_max_encoded(&plain, R, C);
        uint8_t *enc = encode_ok(&c, x, R, C, &len, ctx);
        cr_assert_lt((double)len, raw * 0.95, "%s: gaussian %zu of %zu bytes", SPECS[2 * k + 1], len, raw);
        free(enc);
    }
    free(x);
    codec_ctx_free(ctx);
}

Test(codec, deterministic_and_context_reusable) {
    enum { N = 3 * 7168 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    fill_activations(x, N, 16, 1.0f);
    codec_ctx_t *a = codec_ctx_create(NULL), *b = codec_ctx_create(NULL);
    static const int rows[] = {3, 1, 2, 0, 3, 1};
    for (int s = 0; s < N_SPECS; s++)
        for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {   /* sizes grow and shrink */
            codec_t c = parse_ok(SPECS[s]);
            size_t la, lb;
            uint8_t *ea = encode_ok(&c, x, rows[k], 7168, &la, a), *eb = encode_ok(&c, x, rows[k], 7168, &lb, b);
            cr_assert(la == lb && !memcmp(ea, eb, la), "%s: same input, same bytes", SPECS[s]);
            cr_assert_eq(codec_decode(&c, ea, la, rows[k], 7168, y, b, NULL), 0);
            check_codec(&c, x, y, rows[k], 7168);
            free(ea);
            free(eb);
        }
    codec_ctx_free(a);
    codec_ctx_free(b);
    free(x);
    free(y);
}

/* ---- checksum ---- */

Test(codec, checksum_is_xxh32) {
    static const struct { const char *s; uint32_t h; } v[] = {
        {"", 0x02cc5d05u}, {"a", 0x550d7456u}, {"abc", 0x32d153ffu}, {"abcd", 0xa3643705u},
        {"abcdefghijklmnop", 0x9d2d8b62u}, {"abcdefghijklmnopqrstuvwxyz0123456789", 0x42ae804du},
        {"Nobody inspects the spammish repetition", 0xe2293b2fu},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        cr_assert_eq(codec_checksum((const uint8_t *)v[i].s, strlen(v[i].s)), v[i].h, "'%s'", v[i].s);
    cr_assert_eq(codec_checksum(NULL, 0), 0x02cc5d05u);
}

Test(codec, checksum_detects_bit_flips) {
    enum { N = 4099 };
    uint8_t *p = malloc(N);
    for (int i = 0; i < N; i++) p[i] = (uint8_t)(i * 131 + 7);
    uint32_t h = codec_checksum(p, N);
    for (int bit = 0; bit < N * 8; bit += 7) {
        p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        cr_assert_neq(codec_checksum(p, N), h, "flip of bit %d undetected", bit);
        p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    cr_assert_neq(codec_checksum(p, N - 1), h, "truncation undetected");
    free(p);
}
