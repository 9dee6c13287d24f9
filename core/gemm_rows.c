/* gemm_rows.c - see gemm_rows.h.
 *
 * Each output element is a dot product accumulated in an 8-lane vector
 * (lane l sums the products with k = l mod 8, in increasing k), then reduced
 * in a fixed tree, then the tail (k >= in - in % 8) is added in order. The
 * 4x2 tile (4 input rows x 2 weight rows, 8 vector accumulators) and the 1x1
 * path perform exactly these operations per element, so the tiling never
 * changes a result. target_clones builds an AVX2 copy next to the baseline
 * (SSE2) one; with FP contraction off both compute the same IEEE operations. */
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

/* y[i..i+3][j..j+1] */
static inline void tile4x2(const float *x, const float *w, float *y, int out, int in, int j) {
    const float *x0 = x, *x1 = x + in, *x2 = x + 2 * (size_t)in, *x3 = x + 3 * (size_t)in;
    const float *w0 = w + (size_t)j * in, *w1 = w0 + in;
    v8 a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0}, a30 = {0}, a31 = {0};
    int kv = in - in % 8;
    for (int k = 0; k < kv; k += 8) {
        v8 b0 = load8(w0 + k), b1 = load8(w1 + k), v;
        v = load8(x0 + k); a00 += v * b0; a01 += v * b1;
        v = load8(x1 + k); a10 += v * b0; a11 += v * b1;
        v = load8(x2 + k); a20 += v * b0; a21 += v * b1;
        v = load8(x3 + k); a30 += v * b0; a31 += v * b1;
    }
    y[j] = finish(a00, x0, w0, kv, in);
    y[j + 1] = finish(a01, x0, w1, kv, in);
    y[out + j] = finish(a10, x1, w0, kv, in);
    y[out + j + 1] = finish(a11, x1, w1, kv, in);
    y[2 * (size_t)out + j] = finish(a20, x2, w0, kv, in);
    y[2 * (size_t)out + j + 1] = finish(a21, x2, w1, kv, in);
    y[3 * (size_t)out + j] = finish(a30, x3, w0, kv, in);
    y[3 * (size_t)out + j + 1] = finish(a31, x3, w1, kv, in);
}

static inline float dot1(const float *x, const float *w, int in) {
    v8 a = {0};
    int kv = in - in % 8;
    for (int k = 0; k < kv; k += 8) a += load8(x + k) * load8(w + k);
    return finish(a, x, w, kv, in);
}

__attribute__((target_clones("avx2", "default")))
void gemm_rows(const float *x, const float *w, float *y, int n, int out, int in) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *xi = x + (size_t)i * in;
        float *yi = y + (size_t)i * out;
        int j = 0;
        for (; j + 2 <= out; j += 2) tile4x2(xi, w, yi, out, in, j);
        for (; j < out; j++)
            for (int t = 0; t < 4; t++) yi[(size_t)t * out + j] = dot1(xi + (size_t)t * in, w + (size_t)j * in, in);
    }
    for (; i < n; i++)
        for (int j = 0; j < out; j++) y[(size_t)i * out + j] = dot1(x + (size_t)i * in, w + (size_t)j * in, in);
}
