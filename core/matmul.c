/* matmul.c - see matmul.h: path selection and the driver that splits a
 * product into tasks over output columns.
 *
 * Each task streams a chunk of W's rows, converting in registers, once per
 * group of up to 8 input rows (decode, verify, prefill alike). A prefill used
 * to widen L2-sized blocks of W to f32 first and run every group over them;
 * in-register widening measured 1.2-1.4x faster for BF16 and 1.6-1.8x for FP8
 * at 32-256 rows on this Zen 5 (the f32 block doubles the bytes each tile
 * pulls from L2, and an 8 x 4 tile of f32 loads is L2-bound), so it is gone.
 * Small products run on the calling thread: waking a thread costs more than a
 * few thousand multiply-adds. */
#include "matmul.h"

#include <fenv.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

enum {
    PAR_MIN_MACS = 1 << 18,      /* below this, one thread: a wake-up costs more (measured) */
};

#if defined(__clang__)
#define CPU_HAS_F16C 1   /* clang 14 cannot ask for f16c; every CPU with AVX2 and FMA has it */
#else
#define CPU_HAS_F16C __builtin_cpu_supports("f16c")
#endif

simd_t simd_detect(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && CPU_HAS_F16C)
        return SIMD_AVX2;
#endif
    return SIMD_PORTABLE;
}

int matmul_fp_env_check(spex_err_t *err) {
    if (fegetround() != FE_TONEAREST)
        return spex_fail(err, "the floating-point rounding mode is not round-to-nearest; the kernels' results "
                              "would differ from every other process's");
#if defined(__x86_64__)
    unsigned csr = _mm_getcsr();
    if (csr & 0x8040u)   /* bit 6 DAZ, bit 15 FTZ (e.g. set by code built with -ffast-math) */
        return spex_fail(err, "this process flushes subnormal floats (MXCSR%s%s set, as code built with "
                              "-ffast-math does); FP8 weights would lose their subnormal values and the results "
                              "would differ from every other process's",
                         csr & 0x40u ? " DAZ" : "", csr & 0x8000u ? " FTZ" : "");
#endif
    return 0;
}

const char *simd_name(simd_t s) {
    static const char *const names[SIMD_COUNT] = {"portable", "avx2", "avx512"};
    return (unsigned)s < SIMD_COUNT ? names[s] : "?";
}

int simd_parse(const char *s, simd_t *out) {
    simd_t best = simd_detect();
    if (!strcmp(s, "auto")) {
        *out = best;
        return 0;
    }
    for (int i = 0; i < SIMD_COUNT; i++)
        if (!strcmp(s, simd_name((simd_t)i))) {
            if (i > (int)best) return -1;   /* this CPU cannot run it */
            *out = (simd_t)i;
            return 0;
        }
    return -1;
}

static const mm_kernels_t *kernels(simd_t s) {
    switch (s) {
    case SIMD_AVX512: return &mm_avx512_kernels;
    case SIMD_AVX2: return &mm_avx2_kernels;
    default: return &mm_portable_kernels;
    }
}

wview_t wview_rows(const wview_t *w, int j0, int n) {
    wview_t v = *w;
    v.out = n;
    v.data = (const uint8_t *)w->data + (size_t)j0 * w->in * dtype_size(w->dtype);
    v.row0 = w->row0 + j0;
    return v;
}

uint64_t wview_bytes(const wview_t *w) { return (uint64_t)w->out * (uint64_t)w->in * dtype_size(w->dtype); }

static mm_job_t job_of(const wview_t *w) {
    mm_job_t jb = {.dtype = w->dtype, .in = w->in, .data = w->data,
                   .scale = w->dtype == DTYPE_F8_E4M3 ? w->scale : NULL, .b0 = w->b0,
                   .b1 = w->b1, .scale_cols = w->scale_cols, .row0 = w->row0};
    return jb;
}

/* Widen job rows [j0, j1) to f32 into dst: the dequantized values (FP8: e4m3 times its block scale, rounded once). */
static void widen_rows(const mm_job_t *jb, int j0, int j1, float *dst) {
    size_t es = dtype_size(jb->dtype);
    for (int j = j0; j < j1; j++) {
        const uint8_t *src = (const uint8_t *)jb->data + (size_t)j * jb->in * es;
        float *d = dst + (size_t)(j - j0) * jb->in;
        if (jb->dtype != DTYPE_F8_E4M3) {
            dtype_to_f32(jb->dtype, src, d, (size_t)jb->in);
            continue;
        }
        const float *srow = jb->scale + (size_t)((jb->row0 + j) / jb->b0) * jb->scale_cols;
        for (int k = 0; k < jb->in; k++) d[k] = e4m3_to_f32(src[k]) * srow[k / jb->b1];
    }
}

void wview_row_f32(const wview_t *w, int j, float *dst) {
    mm_job_t jb = job_of(w);
    widen_rows(&jb, j, j + 1, dst);
}

typedef struct mm_call {
    const mm_kernels_t *k;
    mm_job_t jb;
    int n, out, chunk;   /* rows, columns, columns per task */
} mm_call_t;

/* All rows over columns [j0, j1) with the job as given. */
static void rows_over(const mm_kernels_t *k, const mm_job_t *jb, int n, int j0, int j1) {
    for (int i = 0; i < n; i += MM_TILE_ROWS) k->panel(jb, i, n - i < MM_TILE_ROWS ? n - i : MM_TILE_ROWS, j0, j1);
}

static void mm_task(void *ctx, int task, int thread) {
    const mm_call_t *c = ctx;
    int j0 = task * c->chunk, j1 = j0 + c->chunk < c->out ? j0 + c->chunk : c->out;
    (void)thread;
    rows_over(c->k, &c->jb, c->n, j0, j1);
}

static int round_up16(int x) { return (x + 15) & ~15; }

void matmul_ld(const exec_t *ex, const wview_t *w, const float *x, int ldx, float *y, int ldy, int n) {
    if (n <= 0 || w->out <= 0) return;
    mm_call_t c = {.k = kernels(ex->simd), .jb = job_of(w), .n = n, .out = w->out};
    c.jb.x = x, c.jb.ldx = ldx, c.jb.y = y, c.jb.ldy = ldy;
    int threads = ex->thread >= 0 ? 1 : threadpool_size(ex->pool);
    uint64_t macs = (uint64_t)n * (uint64_t)w->out * (uint64_t)w->in;
    if (macs < PAR_MIN_MACS) threads = 1;
    c.chunk = threads == 1 ? w->out : round_up16((w->out + 2 * threads - 1) / (2 * threads));   /* 2 tasks per thread */
    int tasks = (w->out + c.chunk - 1) / c.chunk;
    if (threads == 1) {
        int t = ex->thread >= 0 ? ex->thread : 0;
        for (int i = 0; i < tasks; i++) mm_task(&c, i, t);
    } else {
        threadpool_run(ex->pool, mm_task, &c, tasks);
    }
}

void matmul(const exec_t *ex, const wview_t *w, const float *x, float *y, int n) {
    matmul_ld(ex, w, x, w->in, y, w->out, n);
}

void matvec_t_rows(const exec_t *ex, const wview_t *w, const float *x, int ldx, const int *n_in, float *y, int ldy,
                   int n, int n_out) {
    enum { CHUNK = 64 };
    mm_job_t jb = job_of(w);
    if (n_out > w->in) n_out = w->in;
    const float *xr[CHUNK];
    float *yr[CHUNK];
    int nin[CHUNK];
    for (int i0 = 0; i0 < n; i0 += CHUNK) {
        int m = n - i0 < CHUNK ? n - i0 : CHUNK;
        for (int r = 0; r < m; r++) {
            xr[r] = x + (size_t)(i0 + r) * ldx;
            yr[r] = y + (size_t)(i0 + r) * ldy;
            nin[r] = n_in ? (n_in[i0 + r] < w->out ? n_in[i0 + r] : w->out) : w->out;
        }
        kernels(ex->simd)->vec_t(&jb, xr, yr, nin, m, n_out);
    }
}

void matvec_t_cols(const exec_t *ex, const wview_t *w, const float *x, float *y, int n_out) {
    matvec_t_rows(ex, w, x, 0, NULL, y, 0, 1, n_out);
}

void matvec_t(const exec_t *ex, const wview_t *w, const float *x, float *y) { matvec_t_cols(ex, w, x, y, w->in); }
