/* dtype.c - see dtype.h: names and sizes of safetensors element types and the
 * bit-level conversions between f32 and the 16/8-bit float formats.
 *
 * Encoders round to nearest, ties to even, in integer arithmetic so the result
 * does not depend on the FPU rounding mode. NaN stays NaN (sign kept). */
#include "dtype.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} DTYPES[DTYPE_COUNT] = {
    [DTYPE_F32] = {"F32", 4},     [DTYPE_F16] = {"F16", 2},  [DTYPE_BF16] = {"BF16", 2},
    [DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [DTYPE_F64] = {"F64", 8}, [DTYPE_I64] = {"I64", 8},
    [DTYPE_I32] = {"I32", 4},     [DTYPE_I16] = {"I16", 2},  [DTYPE_I8] = {"I8", 1},
    [DTYPE_U8] = {"U8", 1},       [DTYPE_BOOL] = {"BOOL", 1},
};

const char *dtype_name(spex_dtype_t t) {
    return (unsigned)t < DTYPE_COUNT ? DTYPES[t].name : "?";
}

int dtype_parse(const char *s, spex_dtype_t *out) {
    for (int i = 0; i < DTYPE_COUNT; i++)
        if (!strcmp(s, DTYPES[i].name)) { *out = (spex_dtype_t)i; return 0; }
    return -1;
}

size_t dtype_size(spex_dtype_t t) {
    return (unsigned)t < DTYPE_COUNT ? DTYPES[t].size : 0;
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* ---- bf16: the top half of an f32 ---- */

float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);   /* RNE; carries into the exponent (-> inf) correctly */
    return (uint16_t)(u >> 16);
}

/* ---- f16: 1 sign, 5 exponent (bias 15), 10 mantissa ---- */

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {                            /* zero / subnormal: m * 2^-24, exact in f32 */
        float v = ldexpf((float)m, -24);
        return sign ? -v : v;
    }
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));   /* inf / NaN (payload kept) */
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* Shift right by `shift` (1..31) rounding to nearest even. */
static uint32_t shr_rne(uint32_t v, int shift) {
    uint32_t q = v >> shift, rem = v & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return q;
}

uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000u, x = u & 0x7fffffffu;
    if (x > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu));  /* NaN */
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);   /* >= 65520 rounds to inf */
    if (x < 0x38800000u) {                                       /* below 2^-14: subnormal */
        if (x <= 0x33000000u) return (uint16_t)sign;             /* <= 2^-25 rounds to 0 */
        uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u;
        return (uint16_t)(sign | shr_rne(m, (int)(126 - e)));   /* value / 2^-24 */
    }
    x += 0xfffu + ((x >> 13) & 1u);                              /* RNE on the 13 dropped bits */
    return (uint16_t)(sign | ((x - (112u << 23)) >> 13));
}

/* ---- e4m3 "fn": 1 sign, 4 exponent (bias 7), 3 mantissa; no inf; S.1111.111 = NaN ---- */

float e4m3_to_f32(uint8_t b) {
    uint32_t e = (b >> 3) & 0xfu, m = b & 7u;
    float v;
    if (e == 15 && m == 7) v = NAN;
    else if (e == 0) v = ldexpf((float)m, -9);                  /* subnormal: m/8 * 2^-6 */
    else v = ldexpf((float)(8 + m), (int)e - 10);               /* (1 + m/8) * 2^(e-7) */
    return (b & 0x80u) ? -v : v;
}

uint8_t f32_to_e4m3(float f) {
    uint32_t u = f32_bits(f), sign = (u >> 24) & 0x80u, x = u & 0x7fffffffu;
    if (x > 0x7f800000u) return (uint8_t)(sign | 0x7fu);        /* NaN */
    if (x > 0x43e00000u) return (uint8_t)(sign | 0x7eu);        /* > 448 (incl. inf): saturate */
    if (x < 0x3c800000u) {                                       /* below 2^-6: subnormal, step 2^-9 */
        if (x <= 0x3a800000u) return (uint8_t)sign;              /* <= 2^-10 rounds to 0 */
        uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u;
        return (uint8_t)(sign | shr_rne(m, (int)(141 - e)));    /* value / 2^-9; 8 -> 0x08 */
    }
    x += 0x7ffffu + ((x >> 20) & 1u);                            /* RNE on the 20 dropped bits */
    return (uint8_t)(sign | ((x - (120u << 23)) >> 20));         /* rebias 127 -> 7 */
}

/* ---- bulk conversion (unaligned little-endian source) ---- */

static void e4m3_table(float lut[256]) {
    for (int i = 0; i < 256; i++) lut[i] = e4m3_to_f32((uint8_t)i);
}

int dtype_to_f32(spex_dtype_t t, const void *src, float *dst, size_t n) {
    const uint8_t *p = src;
    switch (t) {
    case DTYPE_F32:
        memcpy(dst, src, n * 4);
        return 0;
    case DTYPE_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case DTYPE_F16:
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case DTYPE_F8_E4M3: {
        float lut[256];
        e4m3_table(lut);
        for (size_t i = 0; i < n; i++) dst[i] = lut[p[i]];
        return 0;
    }
    case DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default:
        return -1;
    }
}
