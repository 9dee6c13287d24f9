/* matmul_avx512.c - the kernels of matmul.h for AVX-512 (F, BW, DQ, VL).
 *
 * The contract's 16 lanes are one zmm register; the reduction tree is
 * upper-half adds (512 -> 256 -> 128 -> 64 -> 32 bits). BF16 weights widen
 * with a zero-extend and shift, F16 with vcvtph2ps, E4M3 by placing its bits
 * in an f32 (matmul.h): integer operations only. Compiled with target attributes; only called after CPUID
 * says AVX512F/BW/DQ/VL. */
#include <stdint.h>
#include <string.h>

#include "core/dtype.h"
#include "core/matmul.h"

#if defined(__x86_64__)
#include <immintrin.h>

#if defined(__clang__)   /* clang ignores GCC's target pragma (the fuzz build uses clang) */
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")
#endif

typedef __m512 V;

static inline V v_loadw_bf16(const uint16_t *p) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
static inline V v_loadw_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline V v_loadw_e4m3(const uint8_t *p) {
    /* sign-extended byte << 20 puts exponent + mantissa at bits 20..26 and the
     * sign at 27..31; the mask keeps bit 31: the f32 bits of matmul.h */
    __m512i d = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(d, 20), _mm512_set1_epi32((int)0x87F00000u)));
}
static inline float v_reduce(V a) {
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

/* v_reduce for a[0..7] at once (matmul_tile.inc's V_REDUCE8): the same tree,
 * each level one add of two shuffled registers holding several vectors' halves,
 * with v_reduce's operand order (low part + high part) at every level. */
static inline __attribute__((always_inline)) void v_reduce8(const V *a, float *out) {
    V b[4], c[2];
    for (int i = 0; i < 4; i++)   /* s8 = lanes 0..7 + lanes 8..15: [s8(a[2i]) | s8(a[2i+1])] */
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xEE));
    for (int i = 0; i < 2; i++)   /* s4 = s8[0..3] + s8[4..7]: quarter q holds s4(a[4i + q]) */
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
    /* s2 = s4[0..1] + s4[2..3]: quarter q holds [s2(a[q]) | s2(a[4 + q])] */
    V d = _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], 0x44), _mm512_shuffle_ps(c[0], c[1], 0xEE));
    /* y = s2[0] + s2[1]: quarter q holds [y(a[q]), y(a[4 + q]), ..] */
    V e = _mm512_add_ps(_mm512_shuffle_ps(d, d, 0x88), _mm512_shuffle_ps(d, d, 0xDD));
    V y = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0), e);
    _mm256_storeu_ps(out, _mm512_castps512_ps256(y));
}

#define V_ZERO() _mm512_setzero_ps()
#define V_SET1(f) _mm512_set1_ps(f)
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_LOADX(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps(p, v)
#define V_MUL(a, b) _mm512_mul_ps(a, b)
#define V_LOADW_F32(p) _mm512_loadu_ps(p)
#define V_LOADW_BF16(p) v_loadw_bf16(p)
#define V_LOADW_F16(p) v_loadw_f16(p)
#define V_LOADW_E4M3(p) v_loadw_e4m3(p)
#define V_REDUCE(v) v_reduce(v)
#define V_REDUCE8(a, out) v_reduce8(a, out)
#define PATH(n) n##_avx512
/* 32 zmm registers hold R x C accumulators + C weights + 1 input row (7-8
 * rows spill two accumulators, still faster than narrower tiles: measured;
 * 2 x 8 beat 2 x 6 by 7-14% on 128-256-long rows, where each tile's
 * reduction weighs most) */
#define TILE_C1 8
#define TILE_C2 8
#define TILE_C3 4
#define TILE_C4 4
#define TILE_C5 4
#define TILE_C6 4
#define TILE_C7 4
#define TILE_C8 4

#include "core/matmul_tile.inc"

const mm_kernels_t mm_avx512_kernels = {panel_avx512, vec_t_avx512};
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
const mm_kernels_t mm_avx512_kernels = {0, 0};
#endif
