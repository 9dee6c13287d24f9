/* test_dtype.c - dtype names/sizes and the f32 <-> bf16 / f16 / e4m3 conversions,
 * checked against independent references: decoders against the format's
 * formula for every code, encoders against a brute-force "nearest
 * representable value, ties to the even code" search, including exact ties. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/dtype.h"

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Value of a sign/exponent/mantissa float with `mbits` mantissa bits and `bias`
 * (no special codes: the caller handles inf/NaN). */
static double fields_value(int sign, int e, int m, int mbits, int bias) {
    double v = e == 0 ? ldexp((double)m, 1 - bias - mbits) : ldexp(1.0 + ldexp((double)m, -mbits), e - bias);
    return sign ? -v : v;
}

static double e4m3_ref(int c) {
    if ((c & 0x7f) == 0x7f) return NAN;
    return fields_value(c >> 7, (c >> 3) & 15, c & 7, 3, 7);
}

static double f16_ref(int h) {
    int e = (h >> 10) & 31, m = h & 0x3ff;
    if (e == 31) return m ? NAN : ((h & 0x8000) ? -INFINITY : INFINITY);
    return fields_value(h >> 15, e, m, 10, 15);
}

static double bf16_ref(int h) {
    int e = (h >> 7) & 255, m = h & 0x7f;
    if (e == 255) return m ? NAN : ((h & 0x8000) ? -INFINITY : INFINITY);
    return fields_value(h >> 15, e, m, 7, 127);
}

Test(dtype, names_sizes_parse) {
    spex_dtype_t t;
    cr_assert_eq(dtype_parse("F8_E4M3", &t), 0);
    cr_assert_eq(t, DTYPE_F8_E4M3);
    cr_assert_eq(dtype_parse("BF16", &t), 0);
    cr_assert_eq(t, DTYPE_BF16);
    cr_assert_eq(dtype_parse("F4", &t), -1);
    cr_assert_eq(dtype_parse("bf16", &t), -1, "names are case-sensitive as in safetensors");
    cr_assert_eq(dtype_size(DTYPE_F32), 4);
    cr_assert_eq(dtype_size(DTYPE_BF16), 2);
    cr_assert_eq(dtype_size(DTYPE_F8_E4M3), 1);
    cr_assert_eq(dtype_size(DTYPE_I64), 8);
    cr_assert_str_eq(dtype_name(DTYPE_F16), "F16");
    for (int i = 0; i < DTYPE_COUNT; i++) {
        cr_assert_eq(dtype_parse(dtype_name((spex_dtype_t)i), &t), 0);
        cr_assert_eq(t, (spex_dtype_t)i);
    }
}

Test(dtype, e4m3_decode_all_codes) {
    for (int c = 0; c < 256; c++) {
        double want = e4m3_ref(c);
        float got = e4m3_to_f32((uint8_t)c);
        if (isnan(want)) cr_assert(isnan(got), "code 0x%02x should be NaN", c);
        else cr_assert_eq((double)got, want, "code 0x%02x: %g vs %g", c, got, want);
    }
    cr_assert_eq(e4m3_to_f32(0x7e), 448.0f);
    cr_assert_eq(e4m3_to_f32(0x01), ldexpf(1, -9));
    cr_assert(signbit(e4m3_to_f32(0x80)));
}

/* Reference encoder: nearest finite e4m3 value, ties to the even code; > 448 saturates. */
static uint8_t e4m3_encode_ref(double x) {
    if (isnan(x)) return signbit(x) ? 0xff : 0x7f;
    int sign = signbit(x) ? 0x80 : 0;
    double a = fabs(x);
    if (a > 448) return (uint8_t)(sign | 0x7e);
    int best = 0;
    double bd = INFINITY;
    for (int c = 0; c < 0x7f; c++) {
        double d = fabs(e4m3_ref(c) - a);
        if (d < bd || (d == bd && (c & 1) == 0)) { bd = d; best = c; }
    }
    return (uint8_t)(sign | best);
}

Test(dtype, e4m3_encode_roundtrip_midpoints_and_ties) {
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7f) == 0x7f) {
            cr_assert(isnan(e4m3_to_f32(f32_to_e4m3(e4m3_to_f32((uint8_t)c)))));
            continue;
        }
        cr_assert_eq(f32_to_e4m3(e4m3_to_f32((uint8_t)c)), c, "round trip of 0x%02x", c);
    }
    /* between every pair of adjacent positive values: the tie, and just either side of it */
    for (int c = 0; c < 0x7e; c++) {
        double lo = e4m3_ref(c), hi = e4m3_ref(c + 1), mid = (lo + hi) / 2;
        float probes[3] = {(float)mid, nextafterf((float)mid, 0), nextafterf((float)mid, INFINITY)};
        for (int k = 0; k < 3; k++) {
            for (int s = 0; s < 2; s++) {
                float v = s ? -probes[k] : probes[k];
                cr_assert_eq(f32_to_e4m3(v), e4m3_encode_ref(v), "x=%.9g: got 0x%02x want 0x%02x", v,
                             f32_to_e4m3(v), e4m3_encode_ref(v));
            }
        }
    }
    /* explicit ties: 0.5*(1 + 1.125) -> 1.0 (even mantissa 000); 1.0625+... */
    cr_assert_eq(f32_to_e4m3(1.0625f), 0x38);   /* between 1.0 (0x38) and 1.125 (0x39) */
    cr_assert_eq(f32_to_e4m3(1.1875f), 0x3a);   /* between 1.125 (0x39) and 1.25 (0x3a) */
    cr_assert_eq(f32_to_e4m3(ldexpf(1, -10)), 0x00);   /* half the smallest subnormal */
    cr_assert_eq(f32_to_e4m3(ldexpf(3, -10)), 0x02);   /* 1.5 subnormal steps -> 2 */
}

Test(dtype, e4m3_saturation_nan_random) {
    cr_assert_eq(f32_to_e4m3(448.0f), 0x7e);
    cr_assert_eq(f32_to_e4m3(464.0f), 0x7e);
    cr_assert_eq(f32_to_e4m3(1e6f), 0x7e);
    cr_assert_eq(f32_to_e4m3(-1e6f), 0xfe);
    cr_assert_eq(f32_to_e4m3(INFINITY), 0x7e);
    cr_assert_eq(f32_to_e4m3(-INFINITY), 0xfe);
    cr_assert_eq(f32_to_e4m3(NAN) & 0x7f, 0x7f);
    cr_assert_eq(f32_to_e4m3(-NAN), 0xff);
    cr_assert_eq(f32_to_e4m3(1e-30f), 0x00);
    cr_assert_eq(f32_to_e4m3(-1e-30f), 0x80);
    uint64_t s = 12345;
    for (int i = 0; i < 20000; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        float v = ldexpf((float)(s & 0xffffff) / 16777216.0f, (int)((s >> 32) % 30) - 14);
        if (s & (1ull << 60)) v = -v;
        cr_assert_eq(f32_to_e4m3(v), e4m3_encode_ref(v), "x=%.9g", v);
    }
}

Test(dtype, bf16_all_codes) {
    for (int h = 0; h < 65536; h++) {
        double want = bf16_ref(h);
        float got = bf16_to_f32((uint16_t)h);
        if (isnan(want)) {
            cr_assert(isnan(got));
            uint16_t back = f32_to_bf16(got);
            cr_assert(isnan(bf16_to_f32(back)), "NaN 0x%04x must stay NaN", h);
            cr_assert_eq(back & 0x8000, h & 0x8000, "NaN sign kept");
            continue;
        }
        cr_assert_eq((double)got, want, "code 0x%04x", h);
        cr_assert_eq(f32_to_bf16(got), h, "round trip 0x%04x", h);
        /* exact tie between h and h+1 (same sign, both finite): rounds to the even one */
        if ((h & 0x7f80) != 0x7f80 && (h & 0x7fff) != 0x7f7f) {
            float tie = from_bits(((uint32_t)h << 16) | 0x8000u);
            uint16_t want_code = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            cr_assert_eq(f32_to_bf16(tie), want_code, "tie above 0x%04x", h);
            cr_assert_eq(f32_to_bf16(from_bits(bits(tie) + 1)), (uint16_t)(h + 1));
            cr_assert_eq(f32_to_bf16(from_bits(bits(tie) - 1)), (uint16_t)h);
        }
    }
    cr_assert_eq(f32_to_bf16(INFINITY), 0x7f80);
    cr_assert_eq(f32_to_bf16(3.4e38f), 0x7f80, "rounds up to inf past the largest bf16");
}

Test(dtype, f16_all_codes) {
    for (int h = 0; h < 65536; h++) {
        double want = f16_ref(h);
        float got = f16_to_f32((uint16_t)h);
        if (isnan(want)) {
            cr_assert(isnan(got));
            uint16_t back = f32_to_f16(got);
            cr_assert(isnan(f16_to_f32(back)), "NaN 0x%04x must stay NaN", h);
            cr_assert_eq(back & 0x8000, h & 0x8000);
            continue;
        }
        cr_assert_eq((double)got, want, "code 0x%04x: %g vs %g", h, got, want);
        cr_assert_eq(f32_to_f16(got), h, "round trip 0x%04x", h);
        /* tie between h and h+1 for finite non-max codes (computed exactly in f32) */
        if ((h & 0x7fff) < 0x7bff) {
            double next = f16_ref(h + 1);
            float tie = (float)((want + next) / 2);
            cr_assert_eq((double)tie, (want + next) / 2, "tie must be exact in f32");
            uint16_t want_code = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            cr_assert_eq(f32_to_f16(tie), want_code, "tie above 0x%04x", h);
            cr_assert_eq(f32_to_f16(nextafterf(tie, (float)next)), (uint16_t)(h + 1));
            cr_assert_eq(f32_to_f16(nextafterf(tie, (float)want)), (uint16_t)h);
        }
    }
    cr_assert_eq(f32_to_f16(65504.0f), 0x7bff);
    cr_assert_eq(f32_to_f16(65519.0f), 0x7bff);
    cr_assert_eq(f32_to_f16(65520.0f), 0x7c00, "tie at 65520 rounds to even = inf");
    cr_assert_eq(f32_to_f16(-INFINITY), 0xfc00);
    cr_assert_eq(f32_to_f16(ldexpf(1, -25)), 0x0000, "half the smallest subnormal ties to 0");
    cr_assert_eq(f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 0x0001);
    cr_assert_eq(f32_to_f16(ldexpf(3, -25)), 0x0002, "1.5 subnormal steps tie to 2");
}

Test(dtype, bulk_unaligned) {
    uint8_t buf[1 + 4 * 8];
    float src[4] = {1.5f, -2.25f, 0.0f, 1e-3f}, dst[4];
    /* BF16 at an odd address */
    for (int i = 0; i < 4; i++) {
        uint16_t h = f32_to_bf16(src[i]);
        buf[1 + 2 * i] = (uint8_t)(h & 0xff);
        buf[2 + 2 * i] = (uint8_t)(h >> 8);
    }
    cr_assert_eq(dtype_to_f32(DTYPE_BF16, buf + 1, dst, 4), 0);
    for (int i = 0; i < 4; i++) cr_assert_eq(dst[i], bf16_to_f32(f32_to_bf16(src[i])));
    /* F16 */
    for (int i = 0; i < 4; i++) {
        uint16_t h = f32_to_f16(src[i]);
        buf[1 + 2 * i] = (uint8_t)(h & 0xff);
        buf[2 + 2 * i] = (uint8_t)(h >> 8);
    }
    cr_assert_eq(dtype_to_f32(DTYPE_F16, buf + 1, dst, 4), 0);
    for (int i = 0; i < 4; i++) cr_assert_eq(dst[i], f16_to_f32(f32_to_f16(src[i])));
    /* F32 and F64 */
    memcpy(buf + 1, src, 16);
    cr_assert_eq(dtype_to_f32(DTYPE_F32, buf + 1, dst, 4), 0);
    cr_assert_eq(memcmp(dst, src, 16), 0);
    double d[4] = {1.5, -2.25, 0, 1e-3};
    memcpy(buf + 1, d, 32);
    cr_assert_eq(dtype_to_f32(DTYPE_F64, buf + 1, dst, 4), 0);
    for (int i = 0; i < 4; i++) cr_assert_eq(dst[i], (float)d[i]);
    /* e4m3 */
    for (int i = 0; i < 4; i++) buf[1 + i] = f32_to_e4m3(src[i]);
    cr_assert_eq(dtype_to_f32(DTYPE_F8_E4M3, buf + 1, dst, 4), 0);
    for (int i = 0; i < 4; i++) cr_assert_eq(dst[i], e4m3_to_f32(f32_to_e4m3(src[i])));
    /* integer types are not floats */
    cr_assert_eq(dtype_to_f32(DTYPE_I64, buf, dst, 1), -1);
    cr_assert_eq(dtype_to_f32(DTYPE_BOOL, buf, dst, 1), -1);
}
