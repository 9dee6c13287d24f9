/* test_matmul.c - the stored-precision kernels of core/matmul.h against a naive
 * double-precision reference written here, and the exactness contract:
 *
 *  - every dtype (F32, BF16, F16, F8_E4M3 with block scales, partial blocks and
 *    odd lengths) within |err| <= 8 sqrt(K) u sum_k |x_k w_jk| of the double
 *    product of x with the weights widened by dtype.c's scalar conversions
 *    (u = 2^-24; the probabilistic dot-product bound of test_kernels.c);
 *  - the same bits on every SIMD path this CPU runs, forced one by one;
 *  - the same bits for 1, 2 and 3 threads;
 *  - a row's result alone equals its result in a batch of 37 (five 8-row
 *    groups and a tail);
 *  - an FP8 matrix (block scale on the input) stays within one rounding per
 *    product of its dequantized F32 copy (block scale on the weight), and its
 *    scaled-input runs split at every 128-row block, prefill or decode;
 *  - matvec_t (x W with W used the other way round) likewise, vs naive. */
#include <criterion/criterion.h>
#include <fenv.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/matmul.h"
#include "testutil.h"
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#define U 0x1.0p-24

static const spex_dtype_t DTYPES[] = {DTYPE_F32, DTYPE_BF16, DTYPE_F16, DTYPE_F8_E4M3};

/* A random [out, in] matrix stored as `dt` (FP8: block scales b x b), and the
 * f32 values it stands for, computed with dtype.c's scalar conversions. */
typedef struct mat {
    wview_t v;
    void *data;
    float *scale, *ref;   /* ref [out, in] */
} mat_t;

static mat_t make_mat(spex_dtype_t dt, int out, int in, int b, unsigned seed) {
    mat_t m = {0};
    float *src = malloc(sizeof(float) * (size_t)out * in + 4);
    m.ref = malloc(sizeof(float) * (size_t)out * in + 4);
    m.data = malloc(dtype_size(dt) * (size_t)out * in + 4);
    cr_assert(src && m.ref && m.data);
    test_fill_random(src, (size_t)out * in, seed, 1.0f);
    int sr = (out + b - 1) / b, sc = (in + b - 1) / b;
    if (dt == DTYPE_F8_E4M3) {
        m.scale = malloc(sizeof(float) * (size_t)sr * sc);
        for (int i = 0; i < sr * sc; i++) m.scale[i] = ldexpf(1.0f + (float)(i % 7) / 8.0f, -7 + i % 5);
    }
    for (int j = 0; j < out; j++)
        for (int k = 0; k < in; k++) {
            size_t i = (size_t)j * in + k;
            switch (dt) {
            case DTYPE_BF16: ((uint16_t *)m.data)[i] = f32_to_bf16(src[i]); m.ref[i] = bf16_to_f32(((uint16_t *)m.data)[i]); break;
            case DTYPE_F16: ((uint16_t *)m.data)[i] = f32_to_f16(src[i]); m.ref[i] = f16_to_f32(((uint16_t *)m.data)[i]); break;
            case DTYPE_F8_E4M3: {
                float s = m.scale[(size_t)(j / b) * sc + k / b];
                ((uint8_t *)m.data)[i] = f32_to_e4m3(src[i] * 300.0f);
                m.ref[i] = e4m3_to_f32(((uint8_t *)m.data)[i]) * s;
                break;
            }
            default: ((float *)m.data)[i] = src[i]; m.ref[i] = src[i];
            }
        }
    m.v = (wview_t){.dtype = dt, .out = out, .in = in, .data = m.data, .scale = m.scale, .b0 = b, .b1 = b,
                    .scale_cols = sc};
    free(src);
    return m;
}

static void free_mat(mat_t *m) { free(m->data), free(m->scale), free(m->ref); }

static exec_t make_exec(threadpool_t **pool, int threads, simd_t simd) {
    spex_err_t err = {0};
    *pool = threadpool_create(threads, &err);
    cr_assert_not_null(*pool, "%s", err.msg);
    return (exec_t){*pool, simd, -1};
}

static void check_vs_naive(spex_dtype_t dt, int n, int out, int in, unsigned seed) {
    threadpool_t *pool;
    exec_t ex = make_exec(&pool, 1, simd_detect());
    mat_t m = make_mat(dt, out, in, 16, seed);
    float *x = malloc(sizeof(float) * (size_t)n * in), *y = malloc(sizeof(float) * (size_t)n * out);
    test_fill_random(x, (size_t)n * in, seed + 1, 1.0f);
    matmul(&ex, &m.v, x, y, n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < out; j++) {
            double s = 0, mag = 0;
            for (int k = 0; k < in; k++) {
                double t = (double)x[(size_t)i * in + k] * m.ref[(size_t)j * in + k];
                s += t, mag += fabs(t);
            }
            double got = y[(size_t)i * out + j];
            cr_assert(fabs(got - s) <= 8.0 * sqrt((double)in) * U * mag + 1e-30,
                      "%s n=%d out=%d in=%d [%d,%d]: got %.9g want %.9g", dtype_name(dt), n, out, in, i, j, got, s);
        }
    free(x), free(y);
    free_mat(&m);
    threadpool_free(pool);
}

Test(matmul, every_dtype_vs_naive) {
    for (int d = 0; d < 4; d++) {
        check_vs_naive(DTYPES[d], 1, 1, 1, 10 + d);
        check_vs_naive(DTYPES[d], 1, 19, 16, 20 + d);
        check_vs_naive(DTYPES[d], 3, 33, 48, 30 + d);
        check_vs_naive(DTYPES[d], 5, 40, 37, 40 + d);    /* tail of 5 */
        check_vs_naive(DTYPES[d], 8, 45, 33, 60 + d);    /* 8-row panels */
        check_vs_naive(DTYPES[d], 12, 70, 160, 50 + d);  /* 8-row group + 4, partial FP8 blocks */
    }
}

/* y for (threads, simd) over n rows. */
static float *run(const mat_t *m, const float *x, int n, int threads, simd_t simd) {
    threadpool_t *pool;
    exec_t ex = make_exec(&pool, threads, simd);
    float *y = malloc(sizeof(float) * (size_t)n * m->v.out);
    matmul(&ex, &m->v, x, y, n);
    threadpool_free(pool);
    return y;
}

static void check_same_bits(spex_dtype_t dt, int n, int out, int in, unsigned seed) {
    mat_t m = make_mat(dt, out, in, 16, seed);
    float *x = malloc(sizeof(float) * (size_t)n * in);
    test_fill_random(x, (size_t)n * in, seed + 3, 2.0f);
    size_t bytes = sizeof(float) * (size_t)n * out;
    float *ref = run(&m, x, n, 1, SIMD_PORTABLE);
    for (int s = SIMD_PORTABLE; s <= (int)simd_detect(); s++)
        for (int t = 1; t <= 3; t++) {
            float *y = run(&m, x, n, t, (simd_t)s);
            cr_assert_eq(memcmp(y, ref, bytes), 0, "%s n=%d out=%d in=%d: %s with %d threads differs from portable",
                         dtype_name(dt), n, out, in, simd_name((simd_t)s), t);
            free(y);
        }
    /* every row alone, on the widest path */
    float *one = malloc(sizeof(float) * (size_t)out);
    threadpool_t *pool;
    exec_t ex = make_exec(&pool, 2, simd_detect());
    for (int i = 0; i < n; i++) {
        matmul(&ex, &m.v, x + (size_t)i * in, one, 1);
        cr_assert_eq(memcmp(one, ref + (size_t)i * out, sizeof(float) * out), 0,
                     "%s row %d of %d differs alone vs in the batch", dtype_name(dt), i, n);
    }
    threadpool_free(pool);
    free(one), free(ref), free(x);
    free_mat(&m);
}

Test(matmul, same_bits_every_path_thread_count_and_batch) {
    cr_log_info("widest SIMD path here: %s", simd_name(simd_detect()));
    for (int d = 0; d < 4; d++) {
        check_same_bits(DTYPES[d], 1, 37, 29, 100 + d);
        check_same_bits(DTYPES[d], 4, 300, 64, 110 + d);
        check_same_bits(DTYPES[d], 7, 301, 48, 130 + d);    /* one 7-row panel pass */
        check_same_bits(DTYPES[d], 13, 83, 160, 140 + d);   /* 8 + 5 rows */
        check_same_bits(DTYPES[d], 37, 515, 130, 120 + d);
        for (int n = 2; n <= 8; n++)   /* every tile height, with a column remainder (batched reductions) */
            check_same_bits(DTYPES[d], n, 141, 96, 150 + 10 * d + n);
    }
}

Test(matmul, fp8_within_rounding_of_dequantized_f32_copy) {
    enum { N = 9, OUT = 200, IN = 272 };
    mat_t q = make_mat(DTYPE_F8_E4M3, OUT, IN, 128, 7);
    wview_t f = {.dtype = DTYPE_F32, .out = OUT, .in = IN, .data = q.ref};   /* dtype.c's dequantization */
    float x[N * IN], yq[N * OUT], yf[N * OUT];
    test_fill_random(x, N * IN, 8, 1.0f);
    threadpool_t *pool;
    exec_t ex = make_exec(&pool, 2, simd_detect());
    for (int n = 1; n <= N; n += N - 1) {   /* 200 outputs: a run crosses the 128-row scale block */
        matmul(&ex, &q.v, x, yq, n);
        matmul(&ex, &f, x, yf, n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < OUT; j++) {
                double mag = 0;
                for (int k = 0; k < IN; k++) mag += fabs((double)x[i * IN + k] * q.ref[(size_t)j * IN + k]);
                /* each product differs by <= 1 rounding (u), the two fma chains by their own errors */
                double d = fabs((double)yq[i * OUT + j] - yf[i * OUT + j]);
                cr_assert(d <= 8.0 * sqrt((double)IN) * U * mag + 1e-30, "FP8 vs its F32 copy (n=%d) [%d,%d]: %.9g vs %.9g",
                          n, i, j, yq[i * OUT + j], yf[i * OUT + j]);
            }
    }
    float row[IN];
    wview_row_f32(&q.v, 131, row);
    cr_assert_eq(memcmp(row, q.ref + 131 * IN, sizeof row), 0, "wview_row_f32 of an FP8 row");
    threadpool_free(pool);
    free_mat(&q);
}

/* FP8's powers of two (e4m3 weights as value * 2^-120, inputs * scale * 2^96,
 * outputs * 2^24; core/matmul_tile.inc) must not overflow or lose bits over
 * what activations and block scales reach and more: |x| from 1e-18 to 1e8,
 * scales from 2^-24 to 2^-2, every path, matmul and matvec_t, vs naive. */
Test(matmul, fp8_extreme_activations_and_scales) {
    enum { OUT = 48, IN = 64, B = 16 };
    mat_t m = make_mat(DTYPE_F8_E4M3, OUT, IN, B, 17);
    const int sr = OUT / B, sc = IN / B;
    for (int i = 0; i < sr * sc; i++) m.scale[i] = ldexpf(1.0f, -24 + 2 * i);   /* 2^-24 .. 2^-2 */
    for (int j = 0; j < OUT; j++)
        for (int k = 0; k < IN; k++)
            m.ref[j * IN + k] = e4m3_to_f32(((uint8_t *)m.data)[j * IN + k]) * m.scale[(j / B) * sc + k / B];
    static const float mags[] = {1e-18f, 1e-9f, 1.0f, 1e4f, 1e8f};
    for (int a = 0; a < 5; a++) {
        float x[IN], y[OUT], yt[IN];
        test_fill_random(x, IN, 40 + a, mags[a]);
        for (int s = SIMD_PORTABLE; s <= (int)simd_detect(); s++) {
            threadpool_t *pool;
            exec_t ex = make_exec(&pool, 1, (simd_t)s);
            matmul(&ex, &m.v, x, y, 1);
            for (int j = 0; j < OUT; j++) {
                double w = 0, mag = 0;
                for (int k = 0; k < IN; k++) w += (double)x[k] * m.ref[j * IN + k], mag += fabs((double)x[k] * m.ref[j * IN + k]);
                cr_assert(isfinite(y[j]) && fabs(y[j] - w) <= 8.0 * sqrt((double)IN) * U * mag,
                          "%s |x|~%g row %d: %.9g, want %.9g", simd_name((simd_t)s), mags[a], j, y[j], w);
            }
            matvec_t(&ex, &m.v, x, yt);   /* yt[k] = sum over j < OUT of x[j] W[j, k] */
            for (int k = 0; k < IN; k++) {
                double w = 0, mag = 0;
                for (int j = 0; j < OUT; j++) w += (double)x[j] * m.ref[j * IN + k], mag += fabs((double)x[j] * m.ref[j * IN + k]);
                cr_assert(isfinite(yt[k]) && fabs(yt[k] - w) <= 2.0 * OUT * U * mag,
                          "%s vec_t |x|~%g col %d: %.9g, want %.9g", simd_name((simd_t)s), mags[a], k, yt[k], w);
            }
            threadpool_free(pool);
        }
    }
    free_mat(&m);
}

Test(matmul, rows_view_keeps_fp8_block_rows) {
    enum { OUT = 300, IN = 128, J0 = 140, NR = 50 };
    mat_t q = make_mat(DTYPE_F8_E4M3, OUT, IN, 128, 9);
    wview_t sub = wview_rows(&q.v, J0, NR);
    float x[IN], ys[NR], ya[OUT];
    test_fill_random(x, IN, 10, 1.0f);
    threadpool_t *pool;
    exec_t ex = make_exec(&pool, 1, simd_detect());
    matmul(&ex, &sub, x, ys, 1);
    matmul(&ex, &q.v, x, ya, 1);
    cr_assert_eq(memcmp(ys, ya + J0, sizeof ys), 0, "rows view differs from the same rows of the whole matrix");
    threadpool_free(pool);
    free_mat(&q);
}

Test(matmul, vec_t_vs_naive_and_paths) {
    for (int d = 0; d < 4; d++) {
        enum { ROWS = 40, COLS = 150 };   /* y[COLS] = x[ROWS] W[ROWS, COLS] */
        mat_t m = make_mat(DTYPES[d], ROWS, COLS, 16, 200 + d);
        float x[ROWS], ref[COLS], y[COLS];
        test_fill_random(x, ROWS, 300 + d, 1.0f);
        threadpool_t *pool;
        exec_t ex = make_exec(&pool, 1, SIMD_PORTABLE);
        matvec_t(&ex, &m.v, x, ref);
        for (int c = 0; c < COLS; c++) {
            double s = 0, mag = 0;
            for (int r = 0; r < ROWS; r++) s += (double)x[r] * m.ref[r * COLS + c], mag += fabs(x[r] * m.ref[r * COLS + c]);
            cr_assert(fabs(ref[c] - s) <= 2.0 * ROWS * U * mag + 1e-30, "%s vec_t col %d: %.9g vs %.9g",
                      dtype_name(DTYPES[d]), c, ref[c], s);
        }
        for (int s = SIMD_PORTABLE; s <= (int)simd_detect(); s++) {
            ex.simd = (simd_t)s;
            matvec_t(&ex, &m.v, x, y);
            cr_assert_eq(memcmp(y, ref, sizeof y), 0, "%s vec_t on %s differs", dtype_name(DTYPES[d]),
                         simd_name((simd_t)s));
        }
        threadpool_free(pool);
        free_mat(&m);
    }
}

/* Several vectors at once (attention's verify rows): each row's result is the
 * single-vector product over its own first n_in[r] weight rows, bit for bit, on
 * every path, for 1..6 rows (passes of 4, 3, 2, 1) and a partial column run. */
Test(matmul, vec_t_rows_same_bits_as_each_row_alone) {
    for (int d = 0; d < 4; d++) {
        enum { ROWS = 40, COLS = 150, NR = 6 };
        mat_t m = make_mat(DTYPES[d], ROWS, COLS, 16, 400 + d);
        float x[NR * ROWS], ref[NR * COLS], y[NR * COLS];
        int n_in[NR];
        test_fill_random(x, NR * ROWS, 500 + d, 1.0f);
        threadpool_t *pool;
        exec_t ex = make_exec(&pool, 1, SIMD_PORTABLE);
        for (int r = 0; r < NR; r++) {
            n_in[r] = r == 2 ? ROWS : ROWS - 5 - 3 * r;   /* not monotone, one full */
            wview_t cut = wview_rows(&m.v, 0, n_in[r]);
            matvec_t(&ex, &cut, x + r * ROWS, ref + r * COLS);
        }
        for (int s = SIMD_PORTABLE; s <= (int)simd_detect(); s++)
            for (int nr = 1; nr <= NR; nr++) {
                ex.simd = (simd_t)s;
                memset(y, 0, sizeof y);
                matvec_t_rows(&ex, &m.v, x, ROWS, n_in, y, COLS, nr, COLS);
                cr_assert_eq(memcmp(y, ref, sizeof(float) * (size_t)nr * COLS), 0,
                             "%s vec_t of %d rows on %s differs from each row alone", dtype_name(DTYPES[d]), nr,
                             simd_name((simd_t)s));
            }
        threadpool_free(pool);
        free_mat(&m);
    }
}

Test(matmul, simd_parse) {
    simd_t s;
    cr_assert_eq(simd_parse("portable", &s), 0);
    cr_assert_eq(s, SIMD_PORTABLE);
    cr_assert_eq(simd_parse("auto", &s), 0);
    cr_assert_eq(s, simd_detect());
    cr_assert_eq(simd_parse("sse9", &s), -1);
}

/* The pool: every task runs exactly once, for many jobs of varying sizes. */
static void count_task(void *ctx, int task, int thread) {
    (void)thread;
    __atomic_fetch_add(&((int *)ctx)[task], 1, __ATOMIC_RELAXED);
}

Test(threadpool, every_task_once) {
    spex_err_t err = {0};
    threadpool_t *p = threadpool_create(3, &err);
    cr_assert_not_null(p, "%s", err.msg);
    cr_assert_eq(threadpool_size(p), 3);
    for (int job = 0; job < 2000; job++) {
        int n = 1 + (job * 7919) % 37, hits[40] = {0};
        threadpool_run(p, count_task, hits, n);
        for (int t = 0; t < 40; t++) cr_assert_eq(hits[t], t < n ? 1 : 0, "job %d task %d ran %d times", job, t, hits[t]);
    }
    threadpool_free(p);
    cr_assert_geq(threadpool_default_threads(), 1);
}

Test(matmul, every_e4m3_byte_widens_exactly) {
    /* Row j holds byte j in all 16 columns; x = 1: y[j] = 16 * e4m3(j) * scale
     * exactly (16 equal terms of a power-of-two count), on every path. NaN
     * bytes (0x7f, 0xff) are left out: checkpoints hold none. */
    enum { R = 256, C = 16 };
    uint8_t w[R * C];
    float scale = 0.375f, x[C], y[R];
    for (int j = 0; j < R; j++) memset(w + j * C, j, C);
    for (int k = 0; k < C; k++) x[k] = 1.0f;
    wview_t v = {.dtype = DTYPE_F8_E4M3, .out = R, .in = C, .data = w, .scale = &scale, .b0 = 256, .b1 = 16,
                 .scale_cols = 1};
    for (int s = SIMD_PORTABLE; s <= (int)simd_detect(); s++) {
        threadpool_t *pool;
        exec_t ex = make_exec(&pool, 1, (simd_t)s);
        matmul(&ex, &v, x, y, 1);
        for (int j = 0; j < R; j++) {
            if ((j & 0x7f) == 0x7f) continue;
            float want = 16.0f * (e4m3_to_f32((uint8_t)j) * scale);
            cr_assert_eq(y[j], want, "%s: byte 0x%02x gives %.9g, want %.9g", simd_name((simd_t)s), j, y[j], want);
        }
        threadpool_free(pool);
    }
}

Test(matmul, fp8_wider_than_the_kernels_take_gives_nan_not_garbage) {
    /* The loaders refuse such tensors (core/linear.c); the kernel still never
     * returns plausible numbers for one. */
    enum { IN = MM_FP8_MAX_IN + 16 };
    uint8_t *w = calloc(2, IN);
    float *x = calloc(IN, sizeof(float)), scale[2] = {1.0f, 1.0f}, y[2];
    cr_assert(w && x);
    wview_t v = {.dtype = DTYPE_F8_E4M3, .out = 2, .in = IN, .data = w, .scale = scale, .b0 = 128,
                 .b1 = MM_FP8_MAX_IN, .scale_cols = 2};
    threadpool_t *pool;
    exec_t ex = make_exec(&pool, 1, simd_detect());
    matmul(&ex, &v, x, y, 1);
    cr_assert(isnan(y[0]) && isnan(y[1]));
    threadpool_free(pool);
    free(w), free(x);
}

/* The kernels' contract assumes IEEE defaults; a changed environment is refused
 * by name (model and worker loading call the check before starting threads). */
Test(matmul, fp_env_check_refuses_flushing_and_other_rounding) {
    spex_err_t err = {0};
    cr_assert_eq(matmul_fp_env_check(&err), 0, "%s", err.msg);
    cr_assert_eq(fesetround(FE_UPWARD), 0);
    cr_assert_eq(matmul_fp_env_check(&err), -1);
    cr_assert(strstr(err.msg, "round-to-nearest"), "%s", err.msg);
    fesetround(FE_TONEAREST);
#if defined(__x86_64__)
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x40u);   /* DAZ: an e4m3 subnormal weight would read as zero */
    int rc = matmul_fp_env_check(&err);
    _mm_setcsr(csr);
    cr_assert_eq(rc, -1);
    cr_assert(strstr(err.msg, "DAZ") && strstr(err.msg, "subnormal"), "%s", err.msg);
#endif
    cr_assert_eq(matmul_fp_env_check(&err), 0, "%s", err.msg);
}
