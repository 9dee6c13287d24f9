/* gemm_rows.c - see gemm_rows.h.
 *
 * Each output element is a dot product accumulated in an 8-lane vector
 * (lane l sums the products with k = l mod 8, in increasing k), then reduced
 * in a fixed tree, then the tail (k >= in - in % 8) is added in order. Tiles of
 * R input rows x C weight rows (4x2, 2x4, 1x4, and Rx1 for leftovers) share
 * their loads between accumulators but perform exactly these operations per
 * element, so the tiling never changes a result. Small batches matter most:
 * a decode step has 1 row per sequence and a speculative verify step K+1, and
 * without tiles a lone row costs two loads per multiply-add. With several
 * rows the weight rows are walked in cache-sized blocks (weight_block), each
 * used by every row block while it is in L2; blocking too only reorders
 * whole output elements, never the operations inside one.
 * target_clones builds an AVX2 copy next to the baseline (SSE2) one; with FP
 * contraction off both compute the same IEEE operations. */
#include "gemm_rows.h"

#include <stddef.h>
#include <string.h>

/* GCC notes that passing 32-byte vectors between functions compiled for
 * different targets changes the ABI; these helpers are static inline and
 * inlined into each clone, so no such call exists. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p) {
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float finish(v8 a, const float *x, const float *w, int kv, int in) {
    float s0 = (a[0] + a[4]) + (a[2] + a[6]);
    float s1 = (a[1] + a[5]) + (a[3] + a[7]);
    float t = 0.0f;
    for (int k = kv; k < in; k++) t += x[k] * w[k];
    return (s0 + s1) + t;
}

/* y[r][j + c] for r < R, c < C: rows x (stride in), weight rows w + j*in, output stride out. */
#define DEFINE_TILE_(R, C)                                                                              \
    static inline void tile_##R##x##C(const float *x, const float *w, float *y, int out, int in, int j) { \
        v8 acc[R][C];                                                                                    \
        memset(acc, 0, sizeof acc);                                                                      \
        int kv = in - in % 8;                                                                            \
        for (int k = 0; k < kv; k += 8) {                                                                \
            v8 b[C];                                                                                     \
            for (int c = 0; c < C; c++) b[c] = load8(w + (size_t)(j + c) * in + k);                      \
            for (int r = 0; r < R; r++) {                                                                \
                v8 a = load8(x + (size_t)r * in + k);                                                    \
                for (int c = 0; c < C; c++) acc[r][c] += a * b[c];                                       \
            }                                                                                            \
        }                                                                                                \
        for (int r = 0; r < R; r++)                                                                      \
            for (int c = 0; c < C; c++)                                                                  \
                y[(size_t)r * out + j + c] = finish(acc[r][c], x + (size_t)r * in, w + (size_t)(j + c) * in, kv, in); \
    }

#define DEFINE_TILE(R, C) DEFINE_TILE_(R, C)   /* expands R, C before pasting */

/* Tile widths per row-block height, chosen by measurement (bench: 512x512 and
 * 1024x512 weights, AVX2): wider weight tiles spill accumulators. */
#ifndef TILE4_C
#define TILE4_C 1
#endif
#ifndef TILE2_C
#define TILE2_C 2
#endif
#ifndef TILE1_C
#define TILE1_C 4
#endif

DEFINE_TILE(4, 1)
DEFINE_TILE(2, 1)
DEFINE_TILE(1, 1)
#if TILE4_C != 1
DEFINE_TILE(4, TILE4_C)
#endif
#if TILE2_C != 1
DEFINE_TILE(2, TILE2_C)
#endif
#if TILE1_C != 1
DEFINE_TILE(1, TILE1_C)
#endif

#define CAT4(a, b, c, d) a##b##c##d
#define TILE_FN(R, C) CAT4(tile_, R, x, C)
#define ROW_BLOCK(R, C)                                                          \
    do {                                                                         \
        int j = j0;                                                              \
        for (; j + (C) <= j1; j += (C)) TILE_FN(R, C)(xi, w, yi, out, in, j);    \
        for (; j < j1; j++) TILE_FN(R, 1)(xi, w, yi, out, in, j);                \
    } while (0)

/* Weight rows per cache block: ~128 KB of weights, so that with several input
 * rows the block is read from memory once and reused from L2 by every row
 * block, instead of streaming the whole matrix once per 4 input rows. */
static int weight_block(int out, int in) {
    int jb = (int)((128u * 1024u / sizeof(float)) / (unsigned)(in > 0 ? in : 1));
    jb -= jb % 4;
    if (jb < 4) jb = 4;
    return jb < out ? jb : out;
}

__attribute__((target_clones("avx2", "default")))
void gemm_rows(const float *x, const float *w, float *y, int n, int out, int in) {
    int jb = n > 1 ? weight_block(out, in) : out;   /* one row: plain streaming */
    for (int j0 = 0; j0 < out; j0 += jb) {
        int j1 = j0 + jb < out ? j0 + jb : out;
        int i = 0;
        for (; i + 4 <= n; i += 4) {
            const float *xi = x + (size_t)i * in;
            float *yi = y + (size_t)i * out;
            ROW_BLOCK(4, TILE4_C);
        }
        for (; i + 2 <= n; i += 2) {
            const float *xi = x + (size_t)i * in;
            float *yi = y + (size_t)i * out;
            ROW_BLOCK(2, TILE2_C);
        }
        for (; i < n; i++) {
            const float *xi = x + (size_t)i * in;
            float *yi = y + (size_t)i * out;
            ROW_BLOCK(1, TILE1_C);
        }
    }
}
