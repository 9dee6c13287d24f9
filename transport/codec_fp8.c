/* codec_fp8.c - see codec.h: DeepSeek-style fp8 (e4m3) block quantisation of
 * activation rows, one f32 scale per 128 channels of a row.
 *
 * Plain layout for x[rows, cols], nb = ceil(cols / 128):
 *   [rows * nb] f32 scales, little-endian, row-major   (scale of row r, block b at r*nb + b)
 *   [rows * cols] e4m3 codes, row-major
 * The last block of a row is short when cols is not a multiple of 128.
 * Element conversions are core/dtype.c's (round to nearest even, saturating). */
#include "transport/codec.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/dtype.h"

#define E4M3_NAN 0x7fu
#define E4M3_SIGN 0x80u

static void put_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

float codec_fp8_scale(float amax) {
    if (!(amax > 0.0f)) return 0.0f;
    float s = amax / CODEC_FP8_MAX;
    if ((double)s * CODEC_FP8_MAX < (double)amax) s = nextafterf(s, INFINITY);   /* round up: amax/s <= 448 */
    if (isinf(s * CODEC_FP8_MAX)) s = nextafterf(s, 0.0f);   /* keep every decoded value finite */
    return s;
}

/* Largest finite |x| over x[0 .. n) (NaN and Inf ignored); 0 if none. */
static float block_amax(const float *x, int n) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a <= FLT_MAX && a > amax) amax = a;
    }
    return amax;
}

/* codes[0 .. n) = e4m3(x / s); non-finite -> NaN code; s == 0 (all +-0) -> signed 0. */
static void block_encode(const float *x, int n, float s, uint8_t *codes) {
    for (int i = 0; i < n; i++) {
        float v = x[i];
        uint8_t sign = signbit(v) ? E4M3_SIGN : 0u;
        if (!isfinite(v)) codes[i] = sign | E4M3_NAN;
        else if (s == 0.0f) codes[i] = sign;
        else codes[i] = f32_to_e4m3(v / s);
    }
}

void codec_fp8_encode_plain(const float *x, int rows, int cols, uint8_t *out) {
    int nb = (cols + CODEC_FP8_BLOCK - 1) / CODEC_FP8_BLOCK;
    uint8_t *scales = out, *codes = out + (size_t)rows * (size_t)nb * 4;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * (size_t)cols;
        for (int b = 0; b < nb; b++) {
            int c0 = b * CODEC_FP8_BLOCK, n = cols - c0 < CODEC_FP8_BLOCK ? cols - c0 : CODEC_FP8_BLOCK;
            float s = codec_fp8_scale(block_amax(xr + c0, n));
            uint32_t sb;
            memcpy(&sb, &s, 4);
            put_le32(scales + ((size_t)r * (size_t)nb + (size_t)b) * 4, sb);
            block_encode(xr + c0, n, s, codes + (size_t)r * (size_t)cols + (size_t)c0);
        }
    }
}

int codec_fp8_decode_plain(const uint8_t *in, int rows, int cols, const float lut[256], float *x, spex_err_t *err) {
    int nb = (cols + CODEC_FP8_BLOCK - 1) / CODEC_FP8_BLOCK;
    const uint8_t *scales = in, *codes = in + (size_t)rows * (size_t)nb * 4;
    for (int r = 0; r < rows; r++) {
        for (int b = 0; b < nb; b++) {
            uint32_t sb = get_le32(scales + ((size_t)r * (size_t)nb + (size_t)b) * 4);
            float s;
            memcpy(&s, &sb, 4);
            if ((sb >> 31) || !isfinite(s))
                return spex_fail(err, "fp8 scale of row %d, block %d is %g (bits 0x%08x): corrupt payload", r, b,
                                 (double)s, sb);
            int c0 = b * CODEC_FP8_BLOCK, n = cols - c0 < CODEC_FP8_BLOCK ? cols - c0 : CODEC_FP8_BLOCK;
            size_t off = (size_t)r * (size_t)cols + (size_t)c0;
            for (int i = 0; i < n; i++) x[off + (size_t)i] = lut[codes[off + (size_t)i]] * s;
        }
    }
    return 0;
}
