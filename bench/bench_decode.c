/* bench_decode.c - prefill and decode speed against the machine's memory bandwidth.
 *
 * One run measures, on this machine:
 *  1. per weight mode (--weights mmap,copy: in place from the page cache, or
 *     anonymous copies): load time, then `--reps` repetitions, interleaved
 *     across modes, of a P-token prefill and N greedy decode steps through the
 *     KV cache (one process, experts in-process);
 *  2. read bandwidth, after the model runs (so its 512 MB buffer is not in the
 *     peak RSS): a sum over a buffer far larger than the caches, on 1 thread
 *     and on N threads (the same thread pool the engine uses);
 *  3. the bytes a decode step must read: every weight of the main model except
 *     the routed experts, plus top-k routed experts per MoE layer (each token
 *     visits k distinct experts), plus one embedding row (model_bytes.h) - and from it the
 *     achieved bandwidth and its fraction of the N-thread read bandwidth;
 *  4. peak RSS (getrusage) against the weight files' size.
 * Prints a table (median over repetitions, min-max in brackets) and, with
 * --csv FILE, one row per (mode, repetition).
 *
 * Usage: bench_decode --model DIR [--threads N] [--prompt P (64)] [-n N (64)]
 *                     [--reps R (3)] [--weights mmap,copy] [--prefault] [--simd PATH]
 *                     [--csv FILE] */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/clock.h"
#include "core/kernels.h"
#include "coordinator/model/kv_cache.h"
#include "coordinator/model/model.h"
#include "coordinator/model/model_bytes.h"

#define MAX_MODES 2
#define MAX_REPS 32

typedef struct opts {
    const char *dir, *csv, *simd;
    int threads, prompt, gen, reps, n_modes;
    bool copy[MAX_MODES], prefault;
} opts_t;

typedef struct rep {
    double prefill_tps, decode_tps, first_token_s;
} rep_t;

typedef struct mode_run {
    model_t *m;
    double load_s;
    rep_t reps[MAX_REPS];
} mode_run_t;

static int usage(void) {
    fprintf(stderr, "usage: bench_decode --model DIR [--threads N] [--prompt P] [-n N] [--reps R] "
                    "[--weights mmap,copy] [--prefault] [--simd portable|avx2|avx512] [--csv FILE]\n");
    return 2;
}

static int parse_modes(const char *s, opts_t *o) {
    o->n_modes = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        if (o->n_modes == MAX_MODES || (strcmp(t, "mmap") && strcmp(t, "copy"))) return -1;
        o->copy[o->n_modes++] = !strcmp(t, "copy");
    }
    return o->n_modes ? 0 : -1;
}

static int parse(int argc, char **argv, opts_t *o) {
    *o = (opts_t){.prompt = 64, .gen = 64, .reps = 3, .n_modes = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--prefault")) { o->prefault = true; continue; }
        if (!v) return usage();
        i++;
        if (!strcmp(a, "--model")) o->dir = v;
        else if (!strcmp(a, "--csv")) o->csv = v;
        else if (!strcmp(a, "--simd")) o->simd = v;
        else if (!strcmp(a, "--threads")) o->threads = atoi(v);
        else if (!strcmp(a, "--prompt")) o->prompt = atoi(v);
        else if (!strcmp(a, "-n")) o->gen = atoi(v);
        else if (!strcmp(a, "--reps")) o->reps = atoi(v);
        else if (!strcmp(a, "--weights")) { if (parse_modes(v, o)) return usage(); }
        else return usage();
    }
    if (!o->dir || o->prompt < 1 || o->gen < 1 || o->reps < 1 || o->reps > MAX_REPS || o->threads < 0) return usage();
    return 0;
}

/* ---------------------------------------------------------------- bandwidth */

typedef struct bw_ctx {
    const float *buf;
    size_t n, chunk;
    float *sums;   /* per task */
} bw_ctx_t;

static void bw_task(void *vctx, int task, int thread) {
    (void)thread;
    bw_ctx_t *c = vctx;
    size_t a = (size_t)task * c->chunk, b = a + c->chunk < c->n ? a + c->chunk : c->n;
    float s[16] = {0};
    for (size_t i = a; i + 16 <= b; i += 16)
        for (int l = 0; l < 16; l++) s[l] += c->buf[i + l];
    float t = 0;
    for (int l = 0; l < 16; l++) t += s[l];
    c->sums[task] = t;
}

/* GB/s reading a 512 MB buffer on `pool` (best of 5 passes). */
static double read_bandwidth(threadpool_t *pool) {
    size_t n = (512u << 20) / sizeof(float);
    float *buf = malloc(n * sizeof(float));
    if (!buf) return 0;
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 1023);
    int tasks = 64;
    float sums[64];
    bw_ctx_t c = {buf, n, (n + tasks - 1) / tasks, sums};
    double best = 0;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = spex_now();
        threadpool_run(pool, bw_task, &c, tasks);
        double gbs = (double)n * sizeof(float) / (spex_now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

static double peak_rss_gb(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss * 1024.0 / 1e9 : 0;
}

/* ---------------------------------------------------------------- runs */

/* One repetition: P-token prefill, then N greedy decode steps. */
static int run_rep(model_t *m, const opts_t *o, rep_t *r, spex_err_t *err) {
    int V = m->cfg.vocab_size;
    kv_cache_t *kv = kv_cache_create(model_cache_layers(m), m->cfg.kv_lora_rank, m->cfg.qk_rope_head_dim,
                                     o->prompt + o->gen, err);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)o->prompt);
    float *logits = malloc(sizeof(float) * (size_t)V);
    uint8_t *want = calloc((size_t)o->prompt, 1);
    int rc = -1;
    if (!kv || !tok || !logits || !want) { if (kv) spex_fail(err, "out of memory"); goto done; }
    for (int i = 0; i < o->prompt; i++) tok[i] = (int32_t)((i * 7919 + 17) % V);
    want[o->prompt - 1] = 1;
    mla_seq_t s = {kv, o->prompt};
    double t0 = spex_now();
    if (model_forward(m, tok, &s, 1, NULL, want, logits, err)) goto done;
    double t1 = spex_now();
    r->prefill_tps = o->prompt / (t1 - t0);
    r->first_token_s = t1 - t0;
    int32_t next = argmax(logits, V);
    for (int i = 0; i < o->gen; i++) {
        mla_seq_t one = {kv, 1};
        if (model_forward(m, &next, &one, 1, NULL, NULL, logits, err)) goto done;
        next = argmax(logits, V);
    }
    r->decode_tps = o->gen / (spex_now() - t1);
    rc = 0;
done:
    kv_cache_free(kv);
    free(tok), free(logits), free(want);
    return rc;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median, min, max of field `off` over reps */
static void stats(const rep_t *r, int n, size_t off, double out[3]) {
    double v[MAX_REPS];
    for (int i = 0; i < n; i++) v[i] = *(const double *)((const char *)&r[i] + off);
    qsort(v, (size_t)n, sizeof v[0], cmp_d);
    out[0] = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    out[1] = v[0];
    out[2] = v[n - 1];
}

static void report(const opts_t *o, mode_run_t *runs, double bw1, double bwn, int threads, double rss) {
    const model_t *m = runs[0].m;
    uint64_t bytes = model_decode_bytes(m), files = model_file_bytes(m);
    printf("model %s: %.2f GB of weight files, %.3f GB read per decoded token; SIMD %s, %d threads\n", o->dir,
           files / 1e9, bytes / 1e9, simd_name(m->ex.simd), threads);
    printf("read bandwidth (512 MB sum): 1 thread %.1f GB/s, %d threads %.1f GB/s\n\n", bw1, threads, bwn);
    printf("%-7s %8s %24s %24s %9s %9s %11s\n", "weights", "load s", "prefill tok/s", "decode tok/s", "GB/s",
           "of BW", "1st tok s");
    for (int k = 0; k < o->n_modes; k++) {
        double p[3], d[3], f[3];
        stats(runs[k].reps, o->reps, offsetof(rep_t, prefill_tps), p);
        stats(runs[k].reps, o->reps, offsetof(rep_t, decode_tps), d);
        stats(runs[k].reps, o->reps, offsetof(rep_t, first_token_s), f);
        double gbs = d[0] * bytes / 1e9;
        printf("%-7s %8.1f %8.1f [%6.1f-%6.1f] %8.2f [%6.2f-%6.2f] %9.1f %8.0f%% %11.3f\n", o->copy[k] ? "copy" : "mmap",
               runs[k].load_s, p[0], p[1], p[2], d[0], d[1], d[2], gbs, 100 * gbs / bwn, f[0]);
    }
    printf("\npeak RSS %.2f GB = %.2fx the weight files (all modes loaded at once: %d)\n", rss, rss / (files / 1e9),
           o->n_modes);
}

static void write_csv(const opts_t *o, mode_run_t *runs, double bw1, double bwn, int threads, double rss) {
    FILE *f = fopen(o->csv, "w");
    if (!f) { fprintf(stderr, "bench_decode: cannot write %s\n", o->csv); return; }
    uint64_t bytes = model_decode_bytes(runs[0].m);
    fprintf(f, "model,weights,threads,simd,rep,prompt,gen,prefill_tok_s,decode_tok_s,first_token_s,bytes_per_token,"
               "decode_gb_s,read_bw_1t_gb_s,read_bw_nt_gb_s,load_s,peak_rss_gb\n");
    for (int k = 0; k < o->n_modes; k++)
        for (int r = 0; r < o->reps; r++) {
            const rep_t *x = &runs[k].reps[r];
            fprintf(f, "%s,%s,%d,%s,%d,%d,%d,%.3f,%.3f,%.4f,%llu,%.3f,%.2f,%.2f,%.2f,%.3f\n", o->dir,
                    o->copy[k] ? "copy" : "mmap", threads, simd_name(runs[k].m->ex.simd), r, o->prompt, o->gen,
                    x->prefill_tps, x->decode_tps, x->first_token_s, (unsigned long long)bytes,
                    x->decode_tps * bytes / 1e9, bw1, bwn, runs[k].load_s, rss);
        }
    fclose(f);
}

int main(int argc, char **argv) {
    opts_t o;
    if (parse(argc, argv, &o)) return 2;
    spex_err_t err = {0};
    int threads = o.threads > 0 ? o.threads : threadpool_default_threads();
    mode_run_t runs[MAX_MODES] = {0};
    int rc = 1;
    double bw1 = 0, bwn = 0, rss = 0;
    for (int k = 0; k < o.n_modes; k++) {
        model_options_t mo = {.load_mtp = false, .local_experts = true, .threads = threads, .simd = o.simd,
                              .max_positions = o.prompt + o.gen,
                              .residency = {.copy = o.copy[k], .prefault = o.prefault}};
        double t0 = spex_now();
        if (!(runs[k].m = model_load(o.dir, &mo, &err))) goto done;
        runs[k].load_s = spex_now() - t0;
    }
    for (int r = 0; r < o.reps; r++)          /* interleaved: drift lands on every mode alike */
        for (int k = 0; k < o.n_modes; k++)
            if (run_rep(runs[k].m, &o, &runs[k].reps[r], &err)) goto done;
    rss = peak_rss_gb();   /* before the bandwidth buffer below */
    threadpool_t *one = threadpool_create(1, &err), *all = threadpool_create(threads, &err);
    if (one && all) bw1 = read_bandwidth(one), bwn = read_bandwidth(all);
    threadpool_free(one), threadpool_free(all);
    report(&o, runs, bw1, bwn, threads, rss);
    if (o.csv) write_csv(&o, runs, bw1, bwn, threads, rss);
    rc = 0;
done:
    if (rc) fprintf(stderr, "bench_decode: %s\n", err.msg);
    for (int k = 0; k < o.n_modes; k++) model_free(runs[k].m);
    return rc;
}
