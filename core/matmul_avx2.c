/* matmul_avx2.c - the kernels of matmul.h for AVX2 + FMA (+F16C).
 *
 * The 16 lanes of the contract live in two 256-bit registers (lanes 0-7 and
 * 8-15), so the first reduction step is simply lo + hi. Compiled with target
 * attributes (not global flags): only called after CPUID says AVX2 and FMA. */
#include <stdint.h>
#include <string.h>

#include "core/dtype.h"
#include "core/matmul.h"

#if defined(__x86_64__)
#include <immintrin.h>

#if defined(__clang__)   /* clang ignores GCC's target pragma (the fuzz build uses clang) */
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif

typedef struct { __m256 lo, hi; } V;

static inline V v_zero(void) { return (V){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
static inline V v_set1(float f) { return (V){_mm256_set1_ps(f), _mm256_set1_ps(f)}; }
static inline V v_fma(V a, V b, V c) { return (V){_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }
static inline V v_loadx(const float *p) { return (V){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
static inline void v_store(float *p, V v) { _mm256_storeu_ps(p, v.lo); _mm256_storeu_ps(p + 8, v.hi); }
static inline V v_mul(V a, V b) { return (V){_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
static inline __m256 bf16x8(const uint16_t *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
static inline V v_loadw_bf16(const uint16_t *p) { return (V){bf16x8(p), bf16x8(p + 8)}; }
static inline V v_loadw_f16(const uint16_t *p) {
    return (V){_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)),
               _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8)))};
}
static inline __m256 e4m3x8(const uint8_t *p) {
    /* sign-extended byte << 20, sign copies above bit 31 masked off: the f32 bits of matmul.h */
    __m256i d = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(d, 20), _mm256_set1_epi32((int)0x87F00000u)));
}
static inline V v_loadw_e4m3(const uint8_t *p) { return (V){e4m3x8(p), e4m3x8(p + 8)}; }
static inline float v_reduce(V a) {
    __m256 s8 = _mm256_add_ps(a.lo, a.hi);                                          /* l + (l+8) */
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1)); /* + (l+4) */
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));                               /* + (l+2) */
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));                       /* s2[0] + s2[1] */
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
#define PATH(n) n##_avx2
#define TILE_C1 4
#define TILE_C2 2
#define TILE_C3 2
#define TILE_C4 2
#define TILE_C5 2
#define TILE_C6 2
#define TILE_C7 2
#define TILE_C8 2

#include "core/matmul_tile.inc"

const mm_kernels_t mm_avx2_kernels = {panel_avx2, vec_t_avx2};
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
const mm_kernels_t mm_avx2_kernels = {0, 0};
#endif
