/* matmul.h - y = x W^T over weights in their stored precision, with one fixed
 * order of operations per output element.
 *
 * W is a view of a checkpoint tensor as stored ([out, in] row-major, F32,
 * BF16, F16, or F8_E4M3 with DeepSeek's block scales), usually pointing into
 * the mmap'ed safetensors file: nothing is converted at load. Each weight is
 * widened to f32 in registers, exactly (bf16, f16; e4m3 as its value times
 * 2^-120: its byte, sign-extended, shifted left by 20 and masked to the sign
 * and bits 20..26, read as an f32 - normal or subnormal), then
 *
 *   y[i, j] = reduce16( acc[0..15] ),  acc[l] = fma(xs[i, k], w[j, k], acc[l])
 *             for k = l, l + 16, l + 32, ... in increasing k  (k >= in: 0)
 *   reduce16: s8[l] = a[l] + a[l+8]; s4[l] = s8[l] + s8[l+4];
 *             s2[l] = s4[l] + s4[l+2]; y = s2[0] + s2[1]
 *
 * where xs = x, except for FP8: xs[i, k] = x[i, k] * (2^96 scale_inv[j / b0,
 * k / b1]), rounded once, and y is the reduction times 2^24 (powers of two:
 * exact while |x scale_inv| < 2^32 and partial sums exceed 2^-102 in
 * magnitude, far beyond what models reach). The block scale multiplies the input, once per
 * (row, block of 128 outputs, k) instead of once per weight - which is what
 * makes FP8 cheaper than BF16 to compute, not only to read. The result is
 * within one rounding per product of the dequantized F32 copy's (tested).
 *
 * That sequence is the contract: it does not depend on the number of rows
 * (tiles of 1-4 rows x 1-8 weight rows share loads, never partial sums), on
 * threads (work is split over output columns j), on prefill vs decode, or
 * on the SIMD path: AVX-512 holds the 16 lanes in one register, AVX2+FMA in
 * two, portable C in an array with fmaf; all three are built from one kernel
 * source (matmul_tile.inc) and tested to agree bit for bit.
 *
 * So a row's result is the same whatever batch, rank, expert placement or
 * replica computes it - what makes lossless expert parallelism bit-identical
 * and greedy speculation token-identical. */
#ifndef SPEX_MATMUL_H
#define SPEX_MATMUL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/threadpool.h"

typedef enum { SIMD_PORTABLE = 0, SIMD_AVX2, SIMD_AVX512, SIMD_COUNT } simd_t;

/* The widest path this CPU runs (CPUID). */
simd_t simd_detect(void);
const char *simd_name(simd_t s);
/* "portable" | "avx2" | "avx512" | "auto"; -1 if unknown or not supported by this CPU. */
int simd_parse(const char *s, simd_t *out);
/* 0 if the calling thread's floating-point environment is the one the
 * contract assumes: round to nearest even, and on x86 subnormals neither read
 * as zero (MXCSR DAZ) nor flushed (FTZ). e4m3 subnormals are f32 subnormals in
 * the kernels, so a process with DAZ set would zero them silently and disagree
 * with every other rank. -1 with a message otherwise. Threads created after
 * the check inherit the environment (POSIX). */
int matmul_fp_env_check(spex_err_t *err);

/* A weight matrix as stored. */
typedef struct wview {
    spex_dtype_t dtype;   /* DTYPE_F32, DTYPE_F16, DTYPE_BF16 or DTYPE_F8_E4M3 */
    int out, in;
    const void *data;     /* [out, in] row-major, `dtype` elements, any alignment */
    /* F8_E4M3 only: scale_inv [ceil(rows/b0), ceil(in/b1)] of the whole
     * tensor; row j of this view is row row0 + j of that tensor. */
    const float *scale;
    int b0, b1, scale_cols, row0;
} wview_t;

/* How to run a kernel: on which threads and which SIMD path. thread < 0 lets
 * a call fan out over the pool; thread >= 0 runs it serially as that pool
 * thread (inside a pool task, using that thread's scratch). */
typedef struct exec {
    threadpool_t *pool;   /* never NULL: a 1-thread pool for serial use */
    simd_t simd;
    int thread;
} exec_t;

/* The same exec, serial on pool thread `thread` (for use inside a task). */
static inline exec_t exec_serial(const exec_t *ex, int thread) {
    exec_t s = {ex->pool, ex->simd, thread};
    return s;
}

/* Rows j0..j0+n of w as a view (scales stay those of the whole tensor). */
wview_t wview_rows(const wview_t *w, int j0, int n);

/* Bytes of the stored matrix (what one pass over it reads). */
uint64_t wview_bytes(const wview_t *w);

/* Row j of W widened to f32, dequantized (FP8: each weight times its block
 * scale, the dequantized F32 copy's value): dst[in]. */
void wview_row_f32(const wview_t *w, int j, float *dst);

/* y[n, out] = x[n, in] W^T (rows of x at stride in, of y at stride out). */
void matmul(const exec_t *ex, const wview_t *w, const float *x, float *y, int n);

/* Same, rows of x at stride ldx and of y at stride ldy. */
void matmul_ld(const exec_t *ex, const wview_t *w, const float *x, int ldx, float *y, int ldy, int n);

/* y[out'] = x[in'] W for a view used the other way round (W is [in', out']
 * as stored: rows are indexed by x's elements): y[c] = sum over d of
 * x[d] W[d, c], accumulated by fma in increasing d. One vector, serial. */
void matvec_t(const exec_t *ex, const wview_t *w, const float *x, float *y);
/* The first n_out (<= w->in) columns of x W only: y[n_out]. */
void matvec_t_cols(const exec_t *ex, const wview_t *w, const float *x, float *y, int n_out);
/* Several vectors at once: row r of x (stride ldx) times the first n_in[r]
 * (<= w->out) rows of W (n_in NULL: all), first n_out columns, into row r of y
 * (stride ldy), r < n. Each row gets exactly matvec_t_cols's sequence (of the
 * view cut to its n_in[r] rows); the rows share the weight loads. Serial. */
void matvec_t_rows(const exec_t *ex, const wview_t *w, const float *x, int ldx, const int *n_in, float *y, int ldy,
                   int n, int n_out);

/* Internal: one path's kernels (matmul_<path>.c). A panel takes up to
 * MM_TILE_ROWS input rows per pass over W (a 5-row verify or an 8-sequence
 * batch step streams each weight once). */
enum { MM_TILE_ROWS = 8 };
/* FP8 matrices take at most this many input columns (the scaled input rows
 * live on the stack; DeepSeek-V3's widest is 18432): loaders refuse more. */
enum { MM_FP8_MAX_IN = 32768 };

typedef struct mm_job {
    spex_dtype_t dtype;
    int in;
    const void *data;     /* weight row r of the job at data + r * in elements */
    const float *scale;   /* F8: scale of job row r, k-block kb at scale[((row0 + r) / b0) * scale_cols + kb] */
    int b0, b1, scale_cols, row0;
    const float *x;       /* input rows, stride ldx */
    int ldx;
    float *y;             /* output rows, stride ldy; column j is job row j */
    int ldy;
} mm_job_t;

typedef struct mm_kernels {
    /* y[i0 .. i0+nr) x columns [j0, j1), 1 <= nr <= MM_TILE_ROWS */
    void (*panel)(const mm_job_t *jb, int i0, int nr, int j0, int j1);
    /* yr[r][c] = sum_d xr[r][d] w[d, c] over job rows d < n_in[r], columns c < n_out, rows r < nr */
    void (*vec_t)(const mm_job_t *jb, const float *const *xr, float *const *yr, const int *n_in, int nr, int n_out);
} mm_kernels_t;

extern const mm_kernels_t mm_portable_kernels, mm_avx2_kernels, mm_avx512_kernels;

#endif
