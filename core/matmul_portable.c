/* matmul_portable.c - the kernels of matmul.h in plain C (any CPU).
 *
 * A 16-lane "vector" is an array of floats and every multiply-add is fmaf(),
 * so this path performs exactly the operations of the SIMD paths; it is the
 * reference the tests force against them, and the fallback on CPUs without
 * AVX2+FMA. It is built without target flags, so fmaf may be a libm call: slow,
 * but correctly rounded as IEEE 754 requires. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/dtype.h"
#include "core/matmul.h"

typedef struct { float l[16]; } V;

static inline V v_zero(void) { V v; for (int i = 0; i < 16; i++) v.l[i] = 0.0f; return v; }
static inline V v_set1(float f) { V v; for (int i = 0; i < 16; i++) v.l[i] = f; return v; }
static inline V v_fma(V a, V b, V c) { for (int i = 0; i < 16; i++) c.l[i] = fmaf(a.l[i], b.l[i], c.l[i]); return c; }
static inline V v_loadx(const float *p) { V v; memcpy(v.l, p, sizeof v.l); return v; }
static inline void v_store(float *p, V v) { memcpy(p, v.l, sizeof v.l); }
static inline V v_mul(V a, V b) { for (int i = 0; i < 16; i++) a.l[i] *= b.l[i]; return a; }
/* Weights may sit at any byte offset of a safetensors file: copy before use. */
static inline V v_loadw_bf16(const uint16_t *p) {
    uint16_t h[16];
    memcpy(h, p, sizeof h);
    V v;
    for (int i = 0; i < 16; i++) v.l[i] = bf16_to_f32(h[i]);
    return v;
}
static inline V v_loadw_f16(const uint16_t *p) {
    uint16_t h[16];
    memcpy(h, p, sizeof h);
    V v;
    for (int i = 0; i < 16; i++) v.l[i] = f16_to_f32(h[i]);
    return v;
}
/* e4m3 bits placed in an f32 (sign to bit 31, exponent + mantissa at bits 20..26): value * 2^-120, exactly. */
static inline V v_loadw_e4m3(const uint8_t *p) {
    V v;
    for (int i = 0; i < 16; i++) {
        uint32_t u = ((p[i] & 0x80u) << 24) | ((p[i] & 0x7Fu) << 20);
        memcpy(&v.l[i], &u, sizeof u);
    }
    return v;
}
static inline float v_reduce(V a) {
    float s8[8], s4[4], s2[2];
    for (int i = 0; i < 8; i++) s8[i] = a.l[i] + a.l[i + 8];
    for (int i = 0; i < 4; i++) s4[i] = s8[i] + s8[i + 4];
    for (int i = 0; i < 2; i++) s2[i] = s4[i] + s4[i + 2];
    return s2[0] + s2[1];
}

#define V_ZERO() v_zero()
#define V_SET1(f) v_set1(f)
#define V_FMA(a, b, c) v_fma(a, b, c)
#define V_LOADX(p) v_loadx(p)
#define V_STORE(p, v) v_store(p, v)
#define V_MUL(a, b) v_mul(a, b)
#define V_LOADW_F32(p) v_loadx(p)
#define V_LOADW_BF16(p) v_loadw_bf16(p)
#define V_LOADW_F16(p) v_loadw_f16(p)
#define V_LOADW_E4M3(p) v_loadw_e4m3(p)
#define V_REDUCE(v) v_reduce(v)
#define PATH(n) n##_portable
#define TILE_C1 4
#define TILE_C2 4
#define TILE_C3 2
#define TILE_C4 2
#define TILE_C5 2
#define TILE_C6 2
#define TILE_C7 2
#define TILE_C8 2

#include "core/matmul_tile.inc"

const mm_kernels_t mm_portable_kernels = {panel_portable, vec_t_portable};
